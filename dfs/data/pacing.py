"""Byte-rate pacing for a data server's background work (scrub, repair pushes), so it
leaves disk and network to clients.

Owns a token bucket and nothing else: callers say how many bytes they just moved
and wait here when they are ahead of their rate.
"""

from __future__ import annotations

import asyncio
import time

MB = 1_000_000
# A second's worth of bytes may go in one burst after an idle spell; more would let a
# job that slept for a minute run unpaced for a minute's worth.
BURST_S = 1.0


class BytePacer:
    """At most `rate_bytes_per_s` on average; 0 means unpaced."""

    def __init__(self, rate_bytes_per_s: float) -> None:
        self.rate_bytes_per_s = rate_bytes_per_s
        self._tokens = rate_bytes_per_s * BURST_S
        self._refilled_at = time.monotonic()

    def set_rate(self, rate_bytes_per_s: float) -> None:
        self.rate_bytes_per_s = rate_bytes_per_s
        self._tokens = min(self._tokens, rate_bytes_per_s * BURST_S)

    async def spend(self, nbytes: int) -> None:
        """Count bytes just moved; sleeps while the job is ahead of its rate."""
        rate = self.rate_bytes_per_s
        if rate <= 0:
            return
        now = time.monotonic()
        self._tokens = min(rate * BURST_S, self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        self._tokens -= nbytes
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / rate)
