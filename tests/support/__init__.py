"""Fixture library for dfs tests: ports, server processes, health checks, cleanup."""
