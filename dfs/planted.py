"""Planted bugs: a test-only switch that breaks one safety rule on purpose.

The simulator and the fault suite (through DFS_PLANTED_BUG, read once at server
start) turn one on to prove their checks catch that bug. Production code
never sets one; every flag defaults to off. A module of its own, below every layer,
because the metadata and the data servers both plant bugs.
"""

from __future__ import annotations

import enum
import os


class PlantedBug(enum.Enum):
    ACK_BEFORE_DURABLE = "ack-before-durable"  # answer before the record is fsynced
    ACCEPT_LOWER_BALLOT = "accept-lower-ballot"  # accept below the promised ballot
    PROMISE_AFTER_RESTART = "promise-after-restart"  # ignore lease rule 3
    APPLY_RETRY_TWICE = "apply-retry-twice"  # re-apply a retried session command (skips
    # the session check on commits: a retry is applied again instead of answered)
    LEASE_READ_WITHOUT_LEASE = "lease-read-without-lease"  # serve reads on an expired lease
    CHUNK_ACK_BEFORE_FSYNC = "chunk-ack-before-fsync"  # a data server acknowledges a chunk
    # without fsyncing its file or its directory


PLANTED_BUG_ENV = "DFS_PLANTED_BUG"


def planted_from_env() -> frozenset[PlantedBug]:
    """The bugs a test asked a server process to plant (comma-separated names in
    DFS_PLANTED_BUG); empty, as always in production, when the variable is unset."""
    names = os.environ.get(PLANTED_BUG_ENV, "")
    return frozenset(PlantedBug(name) for name in names.split(",") if name)
