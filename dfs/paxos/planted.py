"""The planted bugs, where the Paxos and metadata code has always found them (they
live in dfs.planted, which the data server can import too)."""

from dfs.planted import PLANTED_BUG_ENV, PlantedBug, planted_from_env

__all__ = ["PLANTED_BUG_ENV", "PlantedBug", "planted_from_env"]
