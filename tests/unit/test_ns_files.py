"""Chunk-id ranges, ESTALE for foreign ids, orphans held open by sessions, the GC queue,
the ring as data, statfs, readdir cookies while entries change, link limits."""

from __future__ import annotations

import errno

from dfs.meta.ops import (
    AckGC,
    AllocChunkIds,
    BlockUpdate,
    Commit,
    FetchGC,
    GetAttr,
    GetRing,
    Link,
    ListChunkRefs,
    ReadDir,
    RegisterData,
    ReleaseOrphans,
    Remove,
    RemoveMember,
    Rename,
    ReportUsage,
    SetMemberState,
    SetMemberWeight,
    SetOpenInodes,
    SetReplication,
    StatFs,
)
from dfs.meta.results import (
    AllocResult,
    AttrResult,
    ChunkRefsResult,
    ErrnoResult,
    GCResult,
    ReadDirResult,
    RingResult,
    StatFsResult,
)
from dfs.meta.types import LINK_MAX, ROOT, ROOT_INO, Kind, MemberState, Slice
from dfs.paxos.machine import ApplyContext
from tests.support.namespace import Clock


def test_commit_of_ids_outside_the_sessions_ranges_is_estale() -> None:
    clock = Clock()
    ino = clock.create(b"f")
    mine = clock.alloc(4, session=1)
    theirs = clock.alloc(4, session=2)
    assert clock.commit(ino, mine, session=1) == 0
    assert clock.commit(ino, theirs, session=1) == errno.ESTALE
    assert clock.commit(ino, mine + 4, session=1) == errno.ESTALE  # never allocated
    assert clock.run(AllocChunkIds(1), session=0) == AllocResult(errno.ESTALE)
    assert clock.run(AllocChunkIds(0)) == AllocResult(errno.EINVAL)
    clock.machine.session_closed(1, ApplyContext(2, 0, clock.time_ns, 0))
    assert clock.commit(ino, mine + 1, session=1) == errno.ESTALE


def test_sweep_horizon_is_the_lowest_id_a_live_session_holds() -> None:
    clock = Clock()
    first = clock.alloc(10, session=1)
    second = clock.alloc(10, session=2)
    refs = clock.machine.query(ListChunkRefs(0, 10))
    assert isinstance(refs, ChunkRefsResult) and refs.sweep_horizon == first
    clock.machine.session_closed(1, ApplyContext(2, 0, clock.time_ns, 0))
    refs = clock.machine.query(ListChunkRefs(0, 10))
    assert isinstance(refs, ChunkRefsResult) and refs.sweep_horizon == second
    clock.machine.session_closed(2, ApplyContext(3, 0, clock.time_ns, 0))
    refs = clock.machine.query(ListChunkRefs(0, 10))
    assert isinstance(refs, ChunkRefsResult) and refs.sweep_horizon == second + 10


def test_commit_validates_kind_bounds_and_size() -> None:
    clock = Clock()
    directory = clock.create(b"d", Kind.DIRECTORY)
    ino = clock.create(b"f")
    chunk = clock.alloc(8)
    assert clock.commit(directory, chunk) == errno.EISDIR
    assert clock.commit(12345, chunk) == errno.ENOENT
    too_long = BlockUpdate(0, (Slice(1000, 100, chunk, 0, 1),))
    assert clock.run(Commit(ROOT, ino, (too_long,), 1100)) == AttrResult(errno.EINVAL)
    past_end = BlockUpdate(0, (Slice(0, 100, chunk, 0, 1),))
    assert clock.run(Commit(ROOT, ino, (past_end,), 50)) == AttrResult(errno.EINVAL)
    attr = clock.machine.query(GetAttr(ROOT, ino))
    assert isinstance(attr, AttrResult) and attr.attr is not None and attr.attr.size == 0


def test_orphans_keep_their_chunks_while_a_live_session_reports_them_open() -> None:
    clock = Clock()
    ino = clock.create(b"f")
    chunk = clock.alloc(2)
    assert clock.commit(ino, chunk) == 0
    assert clock.run(SetOpenInodes(session=5, inodes=(ino,))) == ErrnoResult(0)
    assert clock.run(Remove(ROOT, ROOT_INO, b"f", False)) == ErrnoResult(0)
    orphan = clock.machine.query(GetAttr(ROOT, ino))
    assert isinstance(orphan, AttrResult) and orphan.attr is not None
    assert orphan.attr.nlink == 0
    clock.run(ReleaseOrphans(clock.time_ns + 1))
    assert clock.machine.state.chunks.refs == {chunk: 1}  # still open in session 5
    clock.run(SetOpenInodes(session=5, inodes=()))
    clock.run(ReleaseOrphans(orphaned_before_ns=1))  # orphaned later than that: kept
    assert clock.machine.state.chunks.refs == {chunk: 1}
    clock.run(ReleaseOrphans(clock.time_ns + 1))
    assert clock.machine.state.chunks.refs == {}
    assert clock.machine.query(GetAttr(ROOT, ino)) == AttrResult(errno.ENOENT)
    assert clock.machine.query(FetchGC(10)) == GCResult((chunk,))
    clock.run(AckGC((chunk,)))
    assert clock.machine.query(FetchGC(10)) == GCResult(())


def test_a_closed_session_no_longer_holds_orphans() -> None:
    clock = Clock()
    ino = clock.create(b"f")
    clock.run(SetOpenInodes(session=5, inodes=(ino,)))
    clock.run(Rename(ROOT, ROOT_INO, b"g", ROOT_INO, b"f"))
    clock.create(b"g")
    clock.run(Rename(ROOT, ROOT_INO, b"g", ROOT_INO, b"f"))  # replaces f: orphan
    clock.run(ReleaseOrphans(clock.time_ns + 1))
    assert ino in clock.machine.state.inodes
    clock.machine.session_closed(5, ApplyContext(9, 0, clock.time_ns, 0))
    clock.run(ReleaseOrphans(clock.time_ns + 1))
    assert ino not in clock.machine.state.inodes


def test_chunk_refs_page_through_ids() -> None:
    clock = Clock()
    ino = clock.create(b"f")
    first = clock.alloc(5)
    for block in range(5):
        update = BlockUpdate(block, (Slice(0, 10, first + block, 0, 1),))
        result = clock.run(Commit(ROOT, ino, (update,), block * 1024 + 10))
        assert isinstance(result, AttrResult) and result.errno == 0
    page = clock.machine.query(ListChunkRefs(0, 3))
    assert isinstance(page, ChunkRefsResult)
    assert page.chunk_ids == (first, first + 1, first + 2) and page.refs == (1, 1, 1)
    rest = clock.machine.query(ListChunkRefs(page.next, 3))
    assert isinstance(rest, ChunkRefsResult)
    assert rest.chunk_ids == (first + 3, first + 4) and rest.next == 0


def test_ring_changes_bump_the_epoch_and_statfs_counts_capacity() -> None:
    clock = Clock()
    assert clock.run(RegisterData(1, "h1:1", 1, "a")) == ErrnoResult(0)
    assert clock.run(RegisterData(2, "h2:1", 2, "b")) == ErrnoResult(0)
    assert clock.run(RegisterData(2, "h2:1", 2, "b")) == ErrnoResult(0)  # no change
    ring = clock.machine.query(GetRing())
    assert isinstance(ring, RingResult) and ring.ring.epoch == 2
    assert [member.id for member in ring.ring.members] == [1, 2]
    assert clock.run(SetMemberState(2, MemberState.DRAINING)) == ErrnoResult(0)
    assert clock.run(SetMemberState(3, MemberState.UP)) == ErrnoResult(errno.ENOENT)
    assert clock.run(SetMemberState(2, 99)) == ErrnoResult(errno.EINVAL)
    assert clock.run(SetMemberWeight(1, 5)) == ErrnoResult(0)
    assert clock.run(SetReplication(2, 1, 64)) == ErrnoResult(0)
    assert clock.run(SetReplication(1, 2, 64)) == ErrnoResult(errno.EINVAL)
    assert clock.run(ReportUsage(1, 8 << 30, 2 << 30)) == ErrnoResult(0)
    assert clock.run(ReportUsage(2, 8 << 30, 0)) == ErrnoResult(0)
    assert clock.run(ReportUsage(9, 1, 0)) == ErrnoResult(errno.ENOENT)
    ring = clock.machine.query(GetRing())
    assert isinstance(ring, RingResult) and ring.ring.epoch == 5
    assert ring.ring.members[1].state == MemberState.DRAINING
    assert ring.ring.members[0].weight == 5 and ring.ring.replicas == 2
    clock.create(b"f")
    stats = clock.machine.query(StatFs(ROOT))
    assert isinstance(stats, StatFsResult)
    assert stats.blocks == (16 << 30) // 2 // 4096
    assert stats.bfree == (14 << 30) // 2 // 4096
    assert stats.files - stats.ffree == 2 and stats.namemax == 255
    assert clock.run(SetMemberState(2, MemberState.OUT)) == ErrnoResult(0)
    stats = clock.machine.query(StatFs(ROOT))
    assert isinstance(stats, StatFsResult) and stats.blocks == (8 << 30) // 2 // 4096
    assert clock.run(RemoveMember(2)) == ErrnoResult(0)
    assert clock.run(RemoveMember(2)) == ErrnoResult(errno.ENOENT)


def _list(clock: Clock, ino: int, cookie: int, limit: int) -> ReadDirResult:
    page = clock.machine.query(ReadDir(ROOT, ino, cookie, limit))
    assert isinstance(page, ReadDirResult) and page.errno == 0
    return page


def test_readdir_returns_every_stable_entry_once_while_others_change() -> None:
    clock = Clock()
    directory = clock.create(b"d", Kind.DIRECTORY)
    stable = {f"s{i}".encode() for i in range(50)}
    for i in range(50):
        clock.create(f"s{i}".encode(), parent=directory)
        clock.create(f"t{i}".encode(), parent=directory)
    seen: list[bytes] = []
    cookie = 0
    churn = 0
    while True:
        page = _list(clock, directory, cookie, 7)
        seen.extend(entry.name for entry in page.entries)
        if page.eof:
            break
        cookie = page.entries[-1].cookie
        # Between pages: remove transient entries, add new ones, rename some.
        for _ in range(3):
            clock.run(Remove(ROOT, directory, f"t{churn}".encode(), False))
            clock.create(f"n{churn}".encode(), parent=directory)
            clock.run(
                Rename(ROOT, directory, f"n{churn}".encode(), directory, f"m{churn}".encode())
            )
            churn += 1
    stable_seen = [name for name in seen if name in stable]
    assert sorted(stable_seen) == sorted(stable)
    assert len(set(seen)) == len(seen)


def test_readdir_resumes_after_a_removed_cookie() -> None:
    clock = Clock()
    for name in (b"a", b"b", b"c", b"d"):
        clock.create(name)
    first = _list(clock, ROOT_INO, 0, 2)
    assert [entry.name for entry in first.entries] == [b"a", b"b"]
    clock.run(Remove(ROOT, ROOT_INO, b"b", False))
    rest = _list(clock, ROOT_INO, first.entries[-1].cookie, 10)
    assert [entry.name for entry in rest.entries] == [b"c", b"d"] and rest.eof
    assert clock.machine.query(ReadDir(ROOT, ROOT_INO, 0, 0)) == ReadDirResult(errno.EINVAL)


def test_link_count_limit_is_emlink() -> None:
    clock = Clock()
    ino = clock.create(b"f")
    directory = clock.create(b"d", Kind.DIRECTORY)
    for number in range(LINK_MAX - 1):
        result = clock.run(Link(ROOT, ino, directory, b"%d" % number))
        assert isinstance(result, AttrResult) and result.errno == 0
    assert clock.run(Link(ROOT, ino, directory, b"one-more")) == AttrResult(errno.EMLINK)


def test_xattr_value_and_total_limits() -> None:
    from dfs.meta.ops import SetXattr
    from dfs.meta.types import XATTR_SIZE_MAX, XATTR_TOTAL_MAX

    clock = Clock()
    ino = clock.create(b"f")
    too_big = SetXattr(ROOT, ino, b"user.big", b"x" * (XATTR_SIZE_MAX + 1))
    assert clock.run(too_big) == ErrnoResult(errno.E2BIG)
    largest = b"x" * XATTR_SIZE_MAX
    stored = 0
    number = 0
    while stored + len(largest) + 10 <= XATTR_TOTAL_MAX:
        name = b"user.%04d" % number
        assert clock.run(SetXattr(ROOT, ino, name, largest)) == ErrnoResult(0)
        stored += len(name) + len(largest)
        number += 1
    assert clock.run(SetXattr(ROOT, ino, b"user.last", largest)) == ErrnoResult(errno.ENOSPC)


def test_queries_never_change_the_state() -> None:
    from dfs.meta.ops import (
        Access,
        GetBlockMap,
        GetXattr,
        ListXattr,
        Lookup,
        Open,
        Readlink,
    )

    clock = Clock()
    ino = clock.create(b"f")
    clock.commit(ino, clock.alloc(1))
    directory = clock.create(b"d", Kind.DIRECTORY)
    before = clock.machine.snapshot()
    for query in (
        Lookup(ROOT, ROOT_INO, b"f"),
        Lookup(ROOT, directory, b".."),
        GetAttr(ROOT, ino),
        ReadDir(ROOT, ROOT_INO, 0, 1, True),
        Readlink(ROOT, ino),
        GetXattr(ROOT, ino, b"user.a"),
        ListXattr(ROOT, ino),
        StatFs(ROOT),
        Access(ROOT, ino, 7),
        Open(ROOT, ino, 2),
        GetBlockMap(ROOT, ino),
        ListChunkRefs(0, 10),
        FetchGC(10),
        GetRing(),
    ):
        clock.machine.query(query)
    assert clock.machine.snapshot() == before
