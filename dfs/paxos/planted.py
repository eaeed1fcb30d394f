"""Planted bugs: a test-only switch that breaks one safety rule on purpose.

The simulator turns one on to prove its checks catch that bug. Production code
never sets one; every flag defaults to off.
"""

from __future__ import annotations

import enum


class PlantedBug(enum.Enum):
    ACK_BEFORE_DURABLE = "ack-before-durable"  # answer before the record is fsynced
    ACCEPT_LOWER_BALLOT = "accept-lower-ballot"  # accept below the promised ballot
    PROMISE_AFTER_RESTART = "promise-after-restart"  # ignore lease rule 3
    APPLY_RETRY_TWICE = "apply-retry-twice"  # re-apply a retried session command
