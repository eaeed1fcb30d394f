"""Which chunk bytes make up a range of a block: the newest slice covering a byte wins,
bytes no slice covers are zeros (DESIGN.md, "Data").

Pure arithmetic over a block map's slices; it never fetches anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class SliceFields(Protocol):
    """A slice as common.proto's Slice describes it."""

    @property
    def offset(self) -> int: ...
    @property
    def length(self) -> int: ...
    @property
    def chunk_id(self) -> int: ...
    @property
    def offset_in_chunk(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Piece:
    """Bytes [start, end) of the block, read from a chunk or, when chunk_id is None, zeros."""

    start: int
    end: int
    chunk_id: int | None = None
    chunk_offset: int = 0  # where `start` sits in the chunk


def pieces_of(slices: Sequence[SliceFields], start: int, end: int) -> list[Piece]:
    """The pieces covering block bytes [start, end), in offset order; slices oldest first."""
    uncovered = [(start, end)] if start < end else []
    found: list[Piece] = []
    for piece_slice in reversed(slices):
        if not uncovered:
            break
        slice_start = piece_slice.offset
        slice_end = piece_slice.offset + piece_slice.length
        remaining: list[tuple[int, int]] = []
        for gap_start, gap_end in uncovered:
            lo, hi = max(gap_start, slice_start), min(gap_end, slice_end)
            if lo >= hi:
                remaining.append((gap_start, gap_end))
                continue
            found.append(Piece(lo, hi, piece_slice.chunk_id,
                               piece_slice.offset_in_chunk + lo - slice_start))
            if gap_start < lo:
                remaining.append((gap_start, lo))
            if hi < gap_end:
                remaining.append((hi, gap_end))
        uncovered = remaining
    found.extend(Piece(lo, hi) for lo, hi in uncovered)
    return sorted(found, key=lambda piece: piece.start)


def covered(slices: Sequence[SliceFields], block_size: int) -> list[tuple[int, int]]:
    """The byte ranges of a block some slice covers, merged and in order."""
    ranges: list[tuple[int, int]] = []
    for piece in pieces_of(slices, 0, block_size):
        if piece.chunk_id is None:
            continue
        if ranges and ranges[-1][1] == piece.start:
            ranges[-1] = (ranges[-1][0], piece.end)
        else:
            ranges.append((piece.start, piece.end))
    return ranges
