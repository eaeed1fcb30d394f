"""Block maps against a bytearray model: writes, truncates and compactions read back the
same bytes (zeros in holes), and reference counts equal the slices naming each chunk."""

from __future__ import annotations

import errno
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from dfs.meta.ops import (
    AllocChunkIds,
    BlockUpdate,
    Commit,
    GetBlockMap,
    MakeNode,
    ReleaseOrphans,
    Remove,
    SetAttr,
)
from dfs.meta.results import AllocResult, AttrResult, BlockMapResult, ErrnoResult
from dfs.meta.statemachine import NamespaceMachine
from dfs.meta.types import ROOT, ROOT_INO, Kind, Slice
from dfs.paxos.machine import ApplyContext

BLOCK = 64
SESSION = 7


class Harness:
    """A machine, a fake chunk store and the model file."""

    def __init__(self, block_size: int = BLOCK) -> None:
        self.block_size = block_size
        self.machine = NamespaceMachine(block_size)
        self.time_ns = 0
        self.chunks: dict[int, bytes] = {}
        self.model = bytearray()
        made = self.run(MakeNode(ROOT, ROOT_INO, b"f", Kind.REGULAR, 0o644))
        assert isinstance(made, AttrResult) and made.attr is not None
        self.ino = made.attr.ino

    def run(self, command: object) -> object:
        self.time_ns += 1
        return self.machine.execute(command, ApplyContext(1, 0, self.time_ns, SESSION))  # type: ignore[arg-type]

    def new_chunk(self, data: bytes) -> int:
        allocated = self.run(AllocChunkIds(1))
        assert isinstance(allocated, AllocResult) and allocated.errno == 0
        self.chunks[allocated.first] = data
        return allocated.first

    def write(self, offset: int, data: bytes) -> None:
        chunk_id = self.new_chunk(data)
        updates = []
        position = offset
        while position < offset + len(data):
            block, in_block = divmod(position, self.block_size)
            length = min(offset + len(data) - position, self.block_size - in_block)
            piece = Slice(in_block, length, chunk_id, position - offset, 1)
            updates.append(BlockUpdate(block, (piece,)))
            position += length
        result = self.run(Commit(ROOT, self.ino, tuple(updates), offset + len(data)))
        assert isinstance(result, AttrResult) and result.errno == 0
        end = offset + len(data)
        if len(self.model) < end:
            self.model.extend(bytes(end - len(self.model)))
        self.model[offset:end] = data

    def truncate(self, size: int) -> None:
        result = self.run(SetAttr(ROOT, self.ino, size=size))
        assert isinstance(result, AttrResult) and result.errno == 0
        if size < len(self.model):
            del self.model[size:]
        else:
            self.model.extend(bytes(size - len(self.model)))

    def block_maps(self) -> dict[int, tuple[Slice, ...]]:
        result = self.machine.query(GetBlockMap(ROOT, self.ino))
        assert isinstance(result, BlockMapResult) and result.errno == 0
        return {block_map.block: block_map.slices for block_map in result.blocks}

    def view(self, slices: tuple[Slice, ...]) -> bytearray:
        buffer = bytearray(self.block_size)
        for piece in slices:
            chunk = self.chunks[piece.chunk_id]
            start = piece.offset_in_chunk
            buffer[piece.offset : piece.offset + piece.length] = chunk[start : start + piece.length]
        return buffer

    def compact(self, block: int, count: int) -> None:
        """What a client does: merge the first `count` slices into one new chunk."""
        slices = self.block_maps().get(block, ())
        if not slices:
            return
        count = min(max(count, 1), len(slices))
        merged = bytes(self.view(slices[:count]))
        chunk_id = self.new_chunk(merged)
        update = BlockUpdate(
            block,
            (Slice(0, self.block_size, chunk_id, 0, 1),),
            replace=True,
            replaces_count=count,
            replaces_last_chunk=slices[count - 1].chunk_id,
        )
        end = min(len(self.model), (block + 1) * self.block_size)
        result = self.run(Commit(ROOT, self.ino, (update,), end))
        assert isinstance(result, AttrResult)
        # The merged slice covers the whole block; past the size it is refused.
        if result.errno == 0:
            return
        assert (block + 1) * self.block_size > len(self.model)
        shorter = Slice(0, len(self.model) - block * self.block_size, chunk_id, 0, 1)
        update = BlockUpdate(block, (shorter,), True, count, slices[count - 1].chunk_id)
        result = self.run(Commit(ROOT, self.ino, (update,), len(self.model)))
        assert isinstance(result, AttrResult) and result.errno == 0

    def read_all(self) -> bytes:
        result = self.machine.query(GetBlockMap(ROOT, self.ino))
        assert isinstance(result, BlockMapResult)
        content = bytearray(result.size)
        for block_map in result.blocks:
            start = block_map.block * self.block_size
            view = self.view(block_map.slices)
            content[start : start + self.block_size] = view[: max(result.size - start, 0)]
        return bytes(content[: result.size])

    def check_refs(self) -> None:
        counted = Counter(
            piece.chunk_id for slices in self.block_maps().values() for piece in slices
        )
        table = self.machine.state.chunks
        assert table.refs == dict(counted)
        for chunk_id in self.chunks:
            assert (chunk_id in table.gc_queue) == (chunk_id not in counted)


operation = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 6 * BLOCK), st.integers(1, 3 * BLOCK)),
    st.tuples(st.just("truncate"), st.integers(0, 7 * BLOCK), st.just(0)),
    st.tuples(st.just("compact"), st.integers(0, 6), st.integers(1, 8)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, max_size=25))
def test_random_writes_truncates_compactions_match_a_bytearray(
    operations: list[tuple[str, int, int]],
) -> None:
    harness = Harness()
    for number, (name, a, b) in enumerate(operations):
        if name == "write":
            harness.write(a, bytes((number * 31 + i) % 251 + 1 for i in range(b)))
        elif name == "truncate":
            harness.truncate(a)
        else:
            harness.compact(a, b)
        assert harness.read_all() == bytes(harness.model)
        harness.check_refs()
    # Unlinking and releasing the orphan drops every reference.
    assert harness.run(Remove(ROOT, ROOT_INO, b"f", False)) == ErrnoResult(0)
    assert harness.run(ReleaseOrphans(harness.time_ns + 1)) == ErrnoResult(0)
    assert harness.machine.state.chunks.refs == {}
    assert set(harness.machine.state.chunks.gc_queue) == set(harness.chunks)


def test_shrink_then_grow_reads_zeros_past_the_cut() -> None:
    mib = 1 << 20
    harness = Harness(block_size=4 * mib)
    pattern = bytes(range(1, 256)) * (8 * mib // 255 + 1)
    harness.write(0, pattern[: 8 * mib])
    harness.truncate(1 * mib)
    harness.truncate(8 * mib)
    content = harness.read_all()
    assert len(content) == 8 * mib
    assert content[: 1 * mib] == pattern[: 1 * mib]
    assert content[1 * mib :] == bytes(7 * mib)
    harness.check_refs()
    assert harness.block_maps()[0][0].length == 1 * mib  # trimmed, not dropped
    assert 1 not in harness.block_maps()


def test_compaction_after_a_truncate_keeps_the_hole() -> None:
    harness = Harness()
    harness.write(0, b"a" * BLOCK)
    harness.write(10, b"b" * 10)
    stale = harness.block_maps()[0]
    harness.truncate(15)
    harness.truncate(BLOCK)
    # A client that read the map before the truncate merges the old bytes...
    chunk_id = harness.new_chunk(bytes(harness.view(stale)))
    update = BlockUpdate(0, (Slice(0, BLOCK, chunk_id, 0, 1),), True, 2, stale[1].chunk_id)
    result = harness.run(Commit(ROOT, harness.ino, (update,), BLOCK))
    assert isinstance(result, AttrResult) and result.errno == 0
    # ...but only what the replaced slices still cover survives.
    assert harness.read_all() == b"a" * 10 + b"b" * 5 + bytes(BLOCK - 15)
    harness.check_refs()


def test_compaction_of_a_block_that_changed_is_refused() -> None:
    harness = Harness()
    harness.write(0, b"a" * 20)
    harness.write(5, b"b" * 5)
    harness.truncate(0)
    harness.write(0, b"c" * 3)
    harness.write(1, b"d" * 3)
    chunk_id = harness.new_chunk(b"x" * BLOCK)
    update = BlockUpdate(0, (Slice(0, 4, chunk_id, 0, 1),), True, 2, 2)  # chunk 2 is gone
    result = harness.run(Commit(ROOT, harness.ino, (update,), 4))
    assert isinstance(result, AttrResult) and result.errno == errno.EAGAIN
    assert harness.read_all() == b"cddd"
