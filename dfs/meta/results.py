"""What operations answer: frozen records with an errno (0 = success) and the payload.

Errors never cross the boundary as exceptions. RESULT_TYPES fixes the wire tags: append
only, never reorder.
"""

from __future__ import annotations

from dataclasses import dataclass

from dfs.meta.types import Attr, BlockMap, Kind, Ring


@dataclass(frozen=True, slots=True)
class ErrnoResult:
    errno: int


@dataclass(frozen=True, slots=True)
class AttrResult:
    errno: int
    attr: Attr | None = None


@dataclass(frozen=True, slots=True)
class ReadlinkResult:
    errno: int
    target: bytes = b""


@dataclass(frozen=True, slots=True)
class DirEntry:
    name: bytes
    ino: int
    kind: Kind
    cookie: int
    attr: Attr | None = None


@dataclass(frozen=True, slots=True)
class ReadDirResult:
    errno: int
    entries: tuple[DirEntry, ...] = ()
    eof: bool = False


@dataclass(frozen=True, slots=True)
class StatFsResult:
    errno: int
    bsize: int = 0
    blocks: int = 0
    bfree: int = 0
    bavail: int = 0
    files: int = 0
    ffree: int = 0
    namemax: int = 0


@dataclass(frozen=True, slots=True)
class XattrResult:
    """value: the bytes; for size-0 asks as well, so the caller learns the length."""

    errno: int
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class ListXattrResult:
    errno: int
    names: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class OpenResult:
    errno: int
    attr: Attr | None = None
    block_size: int = 0


@dataclass(frozen=True, slots=True)
class BlockMapResult:
    errno: int
    blocks: tuple[BlockMap, ...] = ()
    size: int = 0


@dataclass(frozen=True, slots=True)
class AllocResult:
    errno: int
    first: int = 0
    count: int = 0


@dataclass(frozen=True, slots=True)
class ChunkRefsResult:
    chunk_ids: tuple[int, ...]
    refs: tuple[int, ...]
    next: int
    sweep_horizon: int
    # Live sessions' ranges ending above the page's start, and the id counter: an
    # unreferenced id below next_chunk_id outside every range can never be committed.
    allocated: tuple[tuple[int, int], ...] = ()
    next_chunk_id: int = 0


@dataclass(frozen=True, slots=True)
class GCResult:
    chunk_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RingResult:
    ring: Ring


@dataclass(frozen=True, slots=True)
class RepairResult:
    """fsck repairs applied, and skipped because the state moved on since the check."""

    applied: int
    skipped: int


Result = (
    ErrnoResult
    | AttrResult
    | ReadlinkResult
    | ReadDirResult
    | StatFsResult
    | XattrResult
    | ListXattrResult
    | OpenResult
    | BlockMapResult
    | AllocResult
    | ChunkRefsResult
    | GCResult
    | RingResult
    | RepairResult
)

RESULT_TYPES: tuple[type, ...] = (
    ErrnoResult,
    AttrResult,
    ReadlinkResult,
    ReadDirResult,
    StatFsResult,
    XattrResult,
    ListXattrResult,
    OpenResult,
    BlockMapResult,
    AllocResult,
    ChunkRefsResult,
    GCResult,
    RingResult,
    RepairResult,
)
