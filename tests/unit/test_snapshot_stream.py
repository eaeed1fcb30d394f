"""A snapshot file in transit: pieces read from disk, appended to a part file,
resumed after a break, refused when they do not continue it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import xxhash

from dfs.paxos import snapshot as snapshot_files
from dfs.paxos.config import Config
from dfs.paxos.snapshot_stream import (
    PartFile,
    Piece,
    PieceReader,
    PieceRejected,
    SnapshotIdentity,
    identify,
)

PIECE = 4096
SLOT = 77


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A real snapshot file of a little over 10 pieces."""
    payload = os.urandom(10 * PIECE + 123)
    return snapshot_files.write(tmp_path / "sender", SLOT, Config.of({1: "a:1"}), payload)


def pieces_from(path: Path, start: int) -> list[Piece]:
    reader = PieceReader(path, PIECE)
    reader.skip_to(start)
    pieces = []
    while (piece := reader.next_piece()) is not None:
        pieces.append(piece)
    reader.close()
    return pieces


def test_pieces_reassemble_into_the_same_snapshot(source: Path, tmp_path: Path) -> None:
    identity = identify(source, SLOT, PIECE)
    part = PartFile(tmp_path / "receiver", identity, PIECE)
    part.open()
    pieces = pieces_from(source, 0)
    assert all(len(p.data) <= PIECE for p in pieces) and len(pieces) == 11
    for piece in pieces:
        part.write(piece)
    assert part.complete
    received = part.finish()
    assert received.read_bytes() == source.read_bytes()
    assert snapshot_files.latest(tmp_path / "receiver") is not None
    assert not list((tmp_path / "receiver").glob("*.part"))


def test_a_broken_transfer_resumes_where_the_receiver_stopped(
    source: Path, tmp_path: Path
) -> None:
    identity = identify(source, SLOT, PIECE)
    first = PartFile(tmp_path / "receiver", identity, PIECE)
    assert (first.open(), first.held) == (xxhash.xxh64_intdigest(b""), 0)
    for piece in pieces_from(source, 0)[:4]:
        first.write(piece)
    first.close()  # the stream broke here

    again = PartFile(tmp_path / "receiver", identity, PIECE)
    running = again.open()
    assert again.held == 4 * PIECE
    reader = PieceReader(source, PIECE)
    assert reader.skip_to(again.held) == running  # both ends agree: resume, not restart
    rest = pieces_from(source, again.held)
    assert rest[0].offset == 4 * PIECE and len(rest) == 7
    for piece in rest:
        again.write(piece)
    reader.close()
    assert again.finish().read_bytes() == source.read_bytes()


def test_a_piece_that_does_not_continue_the_part_is_refused(
    source: Path, tmp_path: Path
) -> None:
    identity = identify(source, SLOT, PIECE)
    part = PartFile(tmp_path / "receiver", identity, PIECE)
    part.open()
    pieces = pieces_from(source, 0)
    part.write(pieces[0])
    with pytest.raises(PieceRejected, match="held"):
        part.write(pieces[2])  # a gap
    bad = Piece(pieces[1].offset, b"x" * len(pieces[1].data), pieces[1].running_checksum)
    with pytest.raises(PieceRejected, match="running checksum"):
        part.write(bad)
    assert part.held == PIECE  # nothing of the refused pieces was kept
    part.write(pieces[0])  # offset 0 starts over (the sender found our prefix wrong)
    assert part.held == len(pieces[0].data)


def test_a_part_of_another_snapshot_is_dropped_and_a_wrong_whole_refused(
    source: Path, tmp_path: Path
) -> None:
    identity = identify(source, SLOT, PIECE)
    old = PartFile(tmp_path / "receiver", SnapshotIdentity(SLOT - 1, 10, 1), PIECE)
    old.open()
    old.close()
    liar = PartFile(tmp_path / "receiver", SnapshotIdentity(SLOT, identity.size, 12345), PIECE)
    liar.open()
    assert not old.path.exists()
    for piece in pieces_from(source, 0):
        liar.write(piece)
    with pytest.raises(PieceRejected, match="whole-file checksum"):
        liar.finish()
    assert snapshot_files.latest(tmp_path / "receiver") is None
