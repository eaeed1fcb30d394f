"""Buffered bytes of one open file: sorted, disjoint extents that later writes
overwrite, a truncate cuts, and reads lay over the committed bytes.

Pure bookkeeping over byte ranges; it never uploads or fetches anything.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass


@dataclass
class Extent:
    """Buffered bytes [offset, offset + len(data)); a buffer's extents are sorted and
    disjoint, so a flush writes each byte once."""

    offset: int
    data: bytearray

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


def merge_into(extents: list[Extent], offset: int, data: bytes) -> int:
    """Lays `data` over `extents` (sorted, disjoint, never touching), merging every
    extent it overlaps or touches into one, later bytes winning; returns how many
    buffered bytes that added. Appends and rewrites inside one extent work in place,
    so a sequential writer's buffer grows without copies."""
    if not data:
        return 0
    end = offset + len(data)
    lo = bisect_left(extents, offset, key=lambda e: e.end)  # first touching from the left
    hi = bisect_right(extents, end, key=lambda e: e.offset)  # past the last touching one
    if lo == hi:
        extents.insert(lo, Extent(offset, bytearray(data)))
        return len(data)
    first, last = extents[lo], extents[hi - 1]
    if lo + 1 == hi and first.offset <= offset and end <= first.end:
        start = offset - first.offset
        first.data[start : start + len(data)] = data
        return 0
    before = sum(len(e.data) for e in extents[lo:hi])
    tail = last.data[end - last.offset :] if last.end > end else b""
    if first.offset <= offset:
        merged = first.data
        del merged[offset - first.offset :]
    else:
        merged = bytearray()
    merged += data
    merged += tail
    extents[lo:hi] = [Extent(min(first.offset, offset), merged)]
    return len(merged) - before


def cut_at(extents: list[Extent], size: int) -> int:
    """Drops every buffered byte at or past `size` (a truncate); returns how many."""
    dropped = 0
    while extents and extents[-1].offset >= size:
        dropped += len(extents.pop().data)
    if extents and extents[-1].end > size:
        last = extents[-1]
        dropped += last.end - size
        del last.data[size - last.offset :]
    return dropped


def end_of(extents: list[Extent]) -> int:
    """Just past the last buffered byte (0 when empty)."""
    return extents[-1].end if extents else 0


def lay_over(result: bytearray, offset: int, extents: list[Extent]) -> None:
    """Copies the buffered bytes that fall in [offset, offset + len(result)) over
    `result`, which holds those file bytes as committed."""
    end = offset + len(result)
    first = bisect_right(extents, offset, key=lambda e: e.end)
    for extent in extents[first:]:
        if extent.offset >= end:
            break
        lo, hi = max(offset, extent.offset), min(end, extent.end)
        result[lo - offset : hi - offset] = extent.data[lo - extent.offset : hi - extent.offset]
