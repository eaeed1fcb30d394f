"""A differential random exerciser: a dfs mount against a local directory."""
