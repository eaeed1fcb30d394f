"""What a leader knows about each replica it replicates to: how far its log matches,
what to send next, and its latest lease grant. Plain bookkeeping, no decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

NEVER = float("-inf")


@dataclass(slots=True)
class Progress:
    match: int = 0  # highest slot held durably, contiguously, under the leader's ballot
    next: int = 1  # next slot to send
    match_at_last_check: int = 0  # match at the previous heartbeat, to detect a stall
    responded: bool = False  # any reply since the previous heartbeat (is it alive?)
    acked_seq: int = 0  # highest heartbeat seq acknowledged (read-index rounds)
    grant_from: float = NEVER  # leader-clock send time of the heartbeat behind its grant
