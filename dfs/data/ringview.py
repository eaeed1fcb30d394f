"""What a data server knows of the ring: the newest epoch it has heard of and, when
fetched, that epoch's configuration.

Owns the epoch comparison behind STALE_EPOCH and the "fetch a newer ring" signal.
It never talks to the network itself: the membership loop fetches, this records.
"""

from __future__ import annotations

import asyncio

from dfs.placement.members import RingConfig


class RingView:
    """The newest ring epoch seen from any source, and the newest config fetched."""

    def __init__(self) -> None:
        self.epoch = 0  # newest epoch heard of (heartbeat replies, writers, fetched rings)
        self.config: RingConfig | None = None  # newest config actually fetched
        self.behind = asyncio.Event()  # set when `epoch` is newer than `config`

    @property
    def fetched_epoch(self) -> int:
        return self.config.epoch if self.config is not None else 0

    def adopt(self, config: RingConfig) -> None:
        """A ring fetched from the metadata service; older ones are ignored."""
        if config.epoch >= self.fetched_epoch:
            self.config = config
        self.hear(config.epoch)
        if self.epoch <= self.fetched_epoch:
            self.behind.clear()

    def hear(self, epoch: int) -> None:
        """Some party says the ring is at `epoch`. Epochs only grow and only the
        metadata log makes them, so an authenticated caller's newer epoch is news."""
        if epoch > self.epoch:
            self.epoch = epoch
        if self.epoch > self.fetched_epoch:
            self.behind.set()

    def is_stale(self, writer_epoch: int) -> bool:
        """Whether a writer placed its chunk with an older ring than the current one."""
        return writer_epoch < self.epoch
