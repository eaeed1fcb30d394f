"""Sizes a mount's client caches and buffers by (mount options, docs/posix.md).

Only the numbers and their defaults; what uses them lives in chunkcache.py, fs.py,
data.py, compaction.py and hedge.py.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class ClientTuning:
    # Chunk bytes kept for reads (block_cache=MiB); chunks are immutable, so this
    # bounds memory, never staleness.
    block_cache_bytes: int = 64 * MIB
    # Largest read-ahead window (readahead=MiB; 0 turns read-ahead off). The window
    # starts at READAHEAD_START and doubles with every sequential read.
    readahead_bytes: int = 8 * MIB
    # Dirty bytes per open file, uploading or not, before a write waits for a commit
    # (write_buffer=MiB).
    write_buffer_bytes: int = 16 * MIB
    # Buffered bytes that start a background upload (upload_at=MiB): one block of
    # sequential writes, so uploads run while the writer goes on.
    upload_bytes: int = 4 * MIB
    # Slices a block may hold before this client merges them into one chunk
    # (max_slices=N; 0: never). Each slice costs a read a piece and the namespace a
    # record; each compaction rewrites up to a block, so a few slices are let be.
    max_slices: int = 8
    # Ask a second copy when the first is slower than recent reads of that size
    # (hedge_reads=1; 0 turns it off).
    hedge_reads: int = 1


READAHEAD_START = 256 << 10
# A read starting this close to where the previous one ended still counts as
# sequential: the kernel sends its own read-ahead requests out of order.
READAHEAD_SLACK = 1 * MIB
