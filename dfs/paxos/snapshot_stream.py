"""A snapshot file in transit: read from disk and written to disk piece by piece.

Neither end holds more than one piece in memory. Every piece carries its offset and
the running xxh64 of the file from its first byte to the piece's end, so the
receiver checks each piece as it lands and, at the end, the whole file against the
identity it was offered. A transfer that breaks resumes where the receiver's part
file ends, once both ends agree on the running checksum at that point.

Owns the part file and the piece arithmetic; the wire and the decision to send are
node.py's. Blocking file I/O: callers run these methods in a thread.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import xxhash

from dfs.paxos import snapshot as snapshot_files

PART_SUFFIX = ".part"


class PieceRejected(Exception):
    """A piece that does not continue the part file (wrong offset or checksum)."""


@dataclass(frozen=True, slots=True)
class SnapshotIdentity:
    """What names one snapshot file on the wire: its slot, size and whole checksum."""

    slot: int
    size: int
    checksum: int


@dataclass(frozen=True, slots=True)
class Piece:
    offset: int
    data: bytes
    running_checksum: int  # xxh64 of the file's bytes [0, offset + len(data))


def _hash_prefix(handle: BinaryIO, upto: int, piece_bytes: int) -> xxhash.xxh64:
    """xxh64 state over the first `upto` bytes, read one piece at a time."""
    hasher = xxhash.xxh64()
    left = upto
    while left > 0:
        data = handle.read(min(piece_bytes, left))
        if not data:
            break
        hasher.update(data)
        left -= len(data)
    return hasher


def identify(path: Path, slot: int, piece_bytes: int) -> SnapshotIdentity:
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        checksum = _hash_prefix(handle, size, piece_bytes).intdigest()
    return SnapshotIdentity(slot, size, checksum)


class PieceReader:
    """The sending end: a snapshot file read in pieces from a chosen offset."""

    def __init__(self, path: Path, piece_bytes: int) -> None:
        self._handle = path.open("rb")  # an open file survives the snapshot's pruning
        self._piece_bytes = piece_bytes
        self._hasher = xxhash.xxh64()
        self.offset = 0

    def skip_to(self, offset: int) -> int:
        """Move to `offset` (from the start); returns the running checksum there."""
        self._handle.seek(0)
        self._hasher = _hash_prefix(self._handle, offset, self._piece_bytes)
        self.offset = self._handle.tell()
        return self._hasher.intdigest()

    def next_piece(self) -> Piece | None:
        data = self._handle.read(self._piece_bytes)
        if not data:
            return None
        self._hasher.update(data)
        piece = Piece(self.offset, data, self._hasher.intdigest())
        self.offset += len(data)
        return piece

    def close(self) -> None:
        self._handle.close()


class PartFile:
    """The receiving end: the bytes of one offered snapshot received so far.

    Named by the snapshot's identity, so a transfer of another snapshot starts
    afresh and a restarted receiver still finds what it held."""

    def __init__(self, directory: Path, identity: SnapshotIdentity, piece_bytes: int) -> None:
        self.directory = directory
        self.identity = identity
        self.path = directory / f"{identity.slot:020d}-{identity.checksum:016x}{PART_SUFFIX}"
        self._piece_bytes = piece_bytes
        self._handle: BinaryIO | None = None
        self._hasher = xxhash.xxh64()
        self.held = 0

    def open(self) -> int:
        """Open (or create) the part file, dropping parts of other snapshots; returns
        the running checksum of what it already holds."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for other in self.directory.glob("*" + PART_SUFFIX):
            if other != self.path:
                other.unlink()
        self.path.touch()
        self._handle = self.path.open("r+b")
        if os.fstat(self._handle.fileno()).st_size > self.identity.size:
            self._restart()
        self._hasher = _hash_prefix(self._handle, self.identity.size, self._piece_bytes)
        self.held = self._handle.tell()
        return self._hasher.intdigest()

    def write(self, piece: Piece) -> None:
        """Append `piece` (fsynced) if it continues the held bytes; offset 0 restarts."""
        assert self._handle is not None, "open() first"
        if piece.offset == 0 and self.held:
            self._restart()  # the sender found our prefix wrong: start over
        if piece.offset != self.held:
            raise PieceRejected(f"piece at byte {piece.offset}, but {self.held} are held")
        hasher = self._hasher.copy()
        hasher.update(piece.data)
        if hasher.intdigest() != piece.running_checksum:
            raise PieceRejected(f"piece at byte {piece.offset} fails its running checksum")
        if self.held + len(piece.data) > self.identity.size:
            raise PieceRejected(f"piece at byte {piece.offset} runs past the snapshot's end")
        self._handle.seek(self.held)
        self._handle.write(piece.data)
        self.sync()  # what a later attempt resumes from must be on disk
        self._hasher = hasher
        self.held += len(piece.data)

    @property
    def complete(self) -> bool:
        return self.held == self.identity.size

    def sync(self) -> None:
        """Make what is held durable: a later attempt resumes from it."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def finish(self) -> Path:
        """Verify the whole file and make it this replica's newest snapshot file."""
        if not self.complete or self._hasher.intdigest() != self.identity.checksum:
            raise PieceRejected("the received snapshot fails its whole-file checksum")
        self.sync()
        self.close()
        return snapshot_files.adopt(self.directory, self.path, self.identity.slot)

    def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None

    def _restart(self) -> None:
        assert self._handle is not None
        self._handle.truncate(0)
        self._hasher = xxhash.xxh64()
        self.held = 0
