"""Slice arithmetic of one block: overlay, truncation trim, compaction coverage.

Pure list transformations; they report which slices left the block so the caller can
drop chunk references, and never touch reference counts themselves.
"""

from __future__ import annotations

from dfs.meta.types import Slice

Interval = tuple[int, int]  # [start, end) inside a block


def overlay(slices: list[Slice], new: Slice) -> list[Slice]:
    """Lays `new` over the block (newest last); returns the older slices it hides
    completely, which leave the list."""
    start, end = new.offset, new.offset + new.length
    hidden = [s for s in slices if start <= s.offset and s.offset + s.length <= end]
    if hidden:
        slices[:] = [s for s in slices if not (start <= s.offset and s.offset + s.length <= end)]
    slices.append(new)
    return hidden


def trim(slices: list[Slice], cut: int) -> list[Slice]:
    """Cuts the block at byte `cut`: slices starting at or past it leave (returned),
    slices crossing it are shortened."""
    dropped = [s for s in slices if s.offset >= cut]
    kept: list[Slice] = []
    for piece in slices:
        if piece.offset >= cut:
            continue
        if piece.offset + piece.length > cut:
            piece = piece._replace(length=cut - piece.offset)
        kept.append(piece)
    slices[:] = kept
    return dropped


def coverage(slices: list[Slice]) -> list[Interval]:
    """The byte ranges some slice covers, merged and sorted."""
    merged: list[Interval] = []
    for start, end in sorted((s.offset, s.offset + s.length) for s in slices):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def clip(new: list[Slice], allowed: list[Interval]) -> list[Slice]:
    """The parts of `new` inside `allowed`: a compaction may only describe bytes the
    slices it replaces still cover (a truncate may have trimmed them meanwhile)."""
    clipped: list[Slice] = []
    for piece in new:
        start, end = piece.offset, piece.offset + piece.length
        for lo, hi in allowed:
            part_start, part_end = max(start, lo), min(end, hi)
            if part_start < part_end:
                clipped.append(
                    piece._replace(
                        offset=part_start,
                        length=part_end - part_start,
                        offset_in_chunk=piece.offset_in_chunk + part_start - start,
                    )
                )
    return clipped
