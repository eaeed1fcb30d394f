"""Logging setup shared by every dfs process: one line per event, on stderr."""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO", component: str = "dfs") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{component} {LOG_FORMAT}", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
