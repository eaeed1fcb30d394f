"""The chunk store: immutable chunks on a data server's local disk, each whole or absent,
every byte verified before it is returned.

Owns the on-disk layout, the crash-safe write protocol, verification on read, the
repair marks, and the file-ops layer whose test-only crash switch drops unsynced
bytes. Blocking and synchronous (the server runs it in threads); it must never
import asyncio, talk to the network or decide placement.

Layout under the data dir::

    chunks/<ab>/<cd>/<16 hex digits of the id>   ab, cd = the id's low two bytes in hex,
                                                 so consecutive ids spread over 65,536 dirs
    tmp/<id>.<n>.tmp                             uploads in progress; emptied at open

A chunk file is its header (dfs.data.checksum.ChunkHeader: id, length, whole xxh64,
one xxh64 per 64 KiB block, its own checksum) followed by the chunk's bytes. Header
and data live in one file, so one rename publishes both: there is no window in which
a chunk exists without its checksums.

Write protocol: create the temp file, write the data after room for the header,
write the header, fsync, close, rename into place, fsync the chunk's directory. A
crash before the directory fsync may lose the chunk but never leaves part of it;
an ENOSPC anywhere removes the temp file and surfaces as NoSpace.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from dfs.data.checksum import (
    BLOCK_SIZE,
    MAX_CHUNK_LENGTH,
    Buffer,
    ChunkHasher,
    ChunkHeader,
    HeaderError,
    block_count,
    first_bad_block,
    header_length_field,
)
from dfs.planted import PlantedBug, planted_from_env

log = logging.getLogger(__name__)

_T = TypeVar("_T")

CHUNKS_DIR = "chunks"
TEMP_DIR = "tmp"
TEMP_SUFFIX = ".tmp"
DEFAULT_READ_PIECE = 1024 * 1024  # bytes per piece of iter_read: 16 blocks
DEFAULT_LIST_LIMIT = 1000

# One read of this many bytes holds the whole header of any chunk up to 31 MiB.
_HEADER_READ_GUESS = 4096
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_ID_LOCK_STRIPES = 64


# -- errors ----------------------------------------------------------------------------


class ChunkStoreError(Exception):
    """A chunk operation failed; nothing already stored was harmed."""


class ChunkNotFound(ChunkStoreError):
    """The chunk is not held here."""


class ChunkCorrupt(ChunkStoreError):
    """A stored copy failed verification; it is marked for repair."""

    def __init__(self, chunk_id: int, detail: str) -> None:
        super().__init__(f"chunk {chunk_id:016x} is corrupt: {detail}")
        self.chunk_id = chunk_id


class NoSpace(ChunkStoreError):
    """The data filesystem is full; the upload left nothing behind."""


class ChunkConflict(ChunkStoreError):
    """The chunk already exists here with different content."""


class UploadMismatch(ChunkStoreError):
    """The uploaded bytes disagree with the declared length or checksum."""


class InvalidRange(ChunkStoreError, ValueError):
    """A read asked for bytes outside the chunk."""


# -- the file-ops layer and its crash switch -----------------------------------------------


class SimulatedCrash(BaseException):
    """Raised by CrashSimulatingFileOps where a test asked the process to 'die'. A
    BaseException, like SystemExit, so error handling does not tidy up after it."""


class FileOps:
    """The few file operations the store's write path uses, so a test can stand
    between the store and the disk."""

    def create(self, path: str) -> int:
        """Create a new file for writing; it must not exist."""
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)

    def pwrite(self, fd: int, data: Buffer, offset: int) -> None:
        """Write all of data at offset."""
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def rename(self, source: str, target: str) -> None:
        os.replace(source, target)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def mkdir(self, path: str) -> bool:
        """Create a directory; False when it already existed."""
        try:
            os.mkdir(path)
        except FileExistsError:
            return False
        return True

    def unlink(self, path: str) -> None:
        os.unlink(path)


class AckBeforeFsyncFileOps(FileOps):
    """The planted bug `chunk-ack-before-fsync`: fsyncs of files and directories do
    nothing, so a chunk is acknowledged before it is durable. Test-only (the fault
    suite's power losses must catch it); chosen by DFS_PLANTED_BUG, never otherwise."""

    def fsync(self, fd: int) -> None:
        pass

    def fsync_dir(self, path: str) -> None:
        pass


def default_file_ops() -> FileOps:
    if PlantedBug.CHUNK_ACK_BEFORE_FSYNC in planted_from_env():
        log.warning("planted bug %s: chunks are acknowledged before they are durable",
                    PlantedBug.CHUNK_ACK_BEFORE_FSYNC.value)
        return AckBeforeFsyncFileOps()
    return FileOps()


class CrashSimulatingFileOps(FileOps):
    """Test-only: remembers what is not durable yet and forgets it on simulate_crash().

    Durable means: a file's bytes once the file is fsynced; a new name (create or
    rename) once its directory is fsynced. simulate_crash() truncates files to their
    last fsynced size, removes created files whose directory was never fsynced, and
    moves renamed files back. Not modelled: directory creation (taken as durable) and
    unlinks (taken as durable: a lost unlink only brings back a deleted chunk, which
    garbage collection deletes again).

    crash_before(op) makes the next call of that operation raise SimulatedCrash (or a
    given error, e.g. OSError(ENOSPC)) instead of running, to stop a write midway.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd_paths: dict[int, str] = {}
        self._durable_size: dict[str, int] = {}  # files with unsynced bytes -> synced size
        self._undurable_names: dict[str, str | None] = {}  # path -> where it was (None: new)
        self._faults: dict[str, BaseException] = {}

    def crash_before(self, operation: str, error: BaseException | None = None) -> None:
        """The next call of `operation` (a FileOps method name) raises instead of running."""
        self._faults[operation] = error if error is not None else SimulatedCrash(operation)

    def _maybe_fail(self, operation: str) -> None:
        fault = self._faults.pop(operation, None)
        if fault is not None:
            raise fault

    def create(self, path: str) -> int:
        self._maybe_fail("create")
        fd = super().create(path)
        with self._lock:
            self._fd_paths[fd] = path
            self._durable_size[path] = 0
            self._undurable_names[path] = None
        return fd

    def pwrite(self, fd: int, data: Buffer, offset: int) -> None:
        self._maybe_fail("pwrite")
        with self._lock:
            path = self._fd_paths.get(fd)
            if path is not None and path not in self._durable_size:
                self._durable_size[path] = os.fstat(fd).st_size
        super().pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self._maybe_fail("fsync")
        super().fsync(fd)
        with self._lock:
            self._durable_size.pop(self._fd_paths.get(fd, ""), None)

    def close(self, fd: int) -> None:
        self._maybe_fail("close")
        super().close(fd)
        with self._lock:
            self._fd_paths.pop(fd, None)

    def rename(self, source: str, target: str) -> None:
        self._maybe_fail("rename")
        super().rename(source, target)
        with self._lock:
            origin = self._undurable_names.pop(source, source)
            self._undurable_names[target] = origin
            if source in self._durable_size:
                self._durable_size[target] = self._durable_size.pop(source)
            for fd, path in self._fd_paths.items():
                if path == source:
                    self._fd_paths[fd] = target

    def fsync_dir(self, path: str) -> None:
        self._maybe_fail("fsync_dir")
        super().fsync_dir(path)
        with self._lock:
            for name in [n for n in self._undurable_names if os.path.dirname(n) == path]:
                del self._undurable_names[name]

    def mkdir(self, path: str) -> bool:
        self._maybe_fail("mkdir")
        return super().mkdir(path)

    def unlink(self, path: str) -> None:
        self._maybe_fail("unlink")
        super().unlink(path)
        with self._lock:
            self._undurable_names.pop(path, None)
            self._durable_size.pop(path, None)

    def simulate_crash(self) -> list[str]:
        """Forget everything not durable, as a power cut would; returns the paths that
        lost bytes or names. Open files are abandoned: reopen the store afterwards."""
        with self._lock:
            harmed: list[str] = []
            for path, size in self._durable_size.items():
                if os.path.exists(path):
                    os.truncate(path, size)
                    harmed.append(path)
            for path, origin in reversed(list(self._undurable_names.items())):
                if not os.path.exists(path):
                    continue
                if origin is None:
                    os.unlink(path)
                else:
                    os.rename(path, origin)
                harmed.append(path)
            for fd in self._fd_paths:
                with contextlib.suppress(OSError):  # its owner's error path may have closed it
                    os.close(fd)
            self._fd_paths.clear()
            self._durable_size.clear()
            self._undurable_names.clear()
            self._faults.clear()
            return harmed


@dataclass(frozen=True, slots=True)
class ChunkStat:
    """One held chunk, as ListChunks reports it."""

    chunk_id: int
    length: int
    checksum: int  # xxh64 of the whole chunk
    mtime_ns: int  # when it was written


# -- the store ----------------------------------------------------------------------------


class ChunkStore:
    """Chunks under one data dir. Thread-safe; every call may block on the disk."""

    def __init__(self, data_dir: Path | str, file_ops: FileOps | None = None) -> None:
        self.root = Path(data_dir)
        self._ops = file_ops if file_ops is not None else default_file_ops()
        self._chunks_dir = str(self.root / CHUNKS_DIR)
        self._temp_dir = str(self.root / TEMP_DIR)
        self._lock = threading.Lock()  # guards the index, the counters, the repair marks
        # Serialize installs and deletes per id (striped: a lock per id would grow).
        self._id_locks = [threading.Lock() for _ in range(_ID_LOCK_STRIPES)]
        self._ids: list[int] = []  # sorted ids of held chunks
        self._used_bytes = 0  # file bytes of held chunks, headers included
        self._repair: dict[int, None] = {}  # ids marked corrupt, in the order found
        self._temp_names = itertools.count()
        self._open()

    # -- opening ------------------------------------------------------------------------

    def _open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for directory in (self._chunks_dir, self._temp_dir):
            if self._ops.mkdir(directory):
                self._ops.fsync_dir(str(self.root))
        self._remove_temp_files()
        self._scan()
        log.info("chunk store %s: %d chunks, %d bytes", self.root, len(self._ids), self._used_bytes)

    def _remove_temp_files(self) -> None:
        removed = 0
        with os.scandir(self._temp_dir) as entries:
            for entry in entries:
                self._ops.unlink(entry.path)
                removed += 1
        if removed:
            self._ops.fsync_dir(self._temp_dir)
            log.info("removed %d unfinished uploads left by an earlier run", removed)

    def _scan(self) -> None:
        ids: list[int] = []
        for first in _subdirs(self._chunks_dir):
            for second in _subdirs(first):
                with os.scandir(second) as entries:
                    for entry in entries:
                        chunk_id = _parse_chunk_name(entry.name)
                        if chunk_id is None or _chunk_subdir(chunk_id) != _tail(entry.path):
                            log.warning("ignoring stray file %s", entry.path)
                            continue
                        ids.append(chunk_id)
                        self._used_bytes += entry.stat().st_size
        ids.sort()
        self._ids = ids

    # -- writing ------------------------------------------------------------------------

    def begin_write(self, chunk_id: int, length: int) -> ChunkWriter:
        """Start an upload of `length` bytes; nothing is visible until commit()."""
        _check_id(chunk_id)
        if not 0 <= length <= MAX_CHUNK_LENGTH:
            raise UploadMismatch(f"length {length} outside [0, {MAX_CHUNK_LENGTH}]")
        return ChunkWriter(self, chunk_id, length)

    def put(self, chunk_id: int, data: Buffer, checksum: int | None = None) -> ChunkStat:
        """Store a whole chunk durably (see ChunkWriter.commit for the outcomes)."""
        with self.begin_write(chunk_id, len(data)) as writer:
            writer.write(data)
            return writer.commit(checksum)

    def _new_temp(self, chunk_id: int) -> tuple[str, int]:
        while True:
            with self._lock:
                number = next(self._temp_names)
            path = os.path.join(self._temp_dir, f"{chunk_id:016x}.{number}{TEMP_SUFFIX}")
            try:
                return path, self._ops.create(path)
            except FileExistsError:
                continue  # left by another store on this dir; take the next number

    def _install(self, temp_path: str, header: ChunkHeader) -> ChunkStat:
        """Publish a fsynced temp file as the chunk. One install or delete of an id runs
        at a time (its stripe lock), so the conflict check sees every earlier install;
        different ids install in parallel."""
        chunk_id = header.chunk_id
        target = self.path_of(chunk_id)
        with self._stripe(chunk_id):
            replacing = self.has(chunk_id)
            if replacing:
                existing = self._existing_header(chunk_id)
                if existing is not None and (existing.length, existing.checksum) != (
                    header.length,
                    header.checksum,
                ):
                    self._ops.unlink(temp_path)
                    raise ChunkConflict(f"chunk {chunk_id:016x} exists with other content")
                if existing is not None and self._verifies(chunk_id):
                    self._ops.unlink(temp_path)  # a retried or repeated upload
                    return self.stat(chunk_id)
                # Otherwise the held copy is corrupt, and this upload repairs it.
                old_size = os.stat(target).st_size
            self._make_chunk_dirs(chunk_id)
            self._ops.rename(temp_path, target)
            self._ops.fsync_dir(os.path.dirname(target))
            new_size = os.stat(target).st_size
            with self._lock:
                if replacing:
                    self._used_bytes += new_size - old_size
                else:
                    bisect.insort(self._ids, chunk_id)
                    self._used_bytes += new_size
                self._repair.pop(chunk_id, None)
            return self.stat(chunk_id)

    def _stripe(self, chunk_id: int) -> threading.Lock:
        return self._id_locks[chunk_id % len(self._id_locks)]

    def _verifies(self, chunk_id: int) -> bool:
        """Whether the held copy reads back whole (without marking it: the caller is
        about to replace it if not)."""
        if chunk_id in self._repair:
            return False
        try:
            with _open_chunk(self.path_of(chunk_id), chunk_id) as fd:
                header = _read_header(fd, chunk_id)
                _check_file_size(fd, header)
                for _ in _read_verified(fd, header, 0, header.length, DEFAULT_READ_PIECE):
                    pass
        except ChunkCorrupt:
            return False
        return True

    def _existing_header(self, chunk_id: int) -> ChunkHeader | None:
        """The held copy's header, or None when it is unreadable (corrupt)."""
        try:
            with _open_chunk(self.path_of(chunk_id), chunk_id) as fd:
                return _read_header(fd, chunk_id)
        except ChunkCorrupt:
            return None

    def _make_chunk_dirs(self, chunk_id: int) -> None:
        first, second = _chunk_subdir(chunk_id)
        first_path = os.path.join(self._chunks_dir, first)
        if self._ops.mkdir(first_path):
            self._ops.fsync_dir(self._chunks_dir)
        if self._ops.mkdir(os.path.join(first_path, second)):
            self._ops.fsync_dir(first_path)

    # -- reading ------------------------------------------------------------------------

    def read(self, chunk_id: int, offset: int = 0, length: int | None = None) -> bytes:
        """Verified bytes [offset, offset + length) of the chunk (None = to its end).

        ChunkNotFound, ChunkCorrupt (the chunk is then marked for repair), InvalidRange.
        """
        return b"".join(self.iter_read(chunk_id, offset, length, piece_size=MAX_CHUNK_LENGTH))

    def iter_read(
        self,
        chunk_id: int,
        offset: int = 0,
        length: int | None = None,
        piece_size: int = DEFAULT_READ_PIECE,
    ) -> Iterator[bytes]:
        """Like read, in verified pieces of about piece_size bytes, for streaming. A
        generator: its errors (ChunkNotFound too) arrive with the first piece."""
        try:
            with _open_chunk(self.path_of(chunk_id), chunk_id) as fd:
                header = _read_header(fd, chunk_id)
                _check_file_size(fd, header)
                end = header.length if length is None else offset + length
                if not 0 <= offset <= end <= header.length:
                    raise InvalidRange(
                        f"bytes [{offset}, {end}) outside chunk of {header.length} bytes"
                    )
                yield from _read_verified(fd, header, offset, end, piece_size)
        except ChunkCorrupt:
            self.mark_corrupt(chunk_id)
            raise

    def stat(self, chunk_id: int) -> ChunkStat:
        """Length, whole checksum and write time; ChunkNotFound or ChunkCorrupt."""
        try:
            with _open_chunk(self.path_of(chunk_id), chunk_id) as fd:
                header = _read_header(fd, chunk_id)
                mtime_ns = _check_file_size(fd, header)
        except ChunkCorrupt:
            self.mark_corrupt(chunk_id)
            raise
        return ChunkStat(chunk_id, header.length, header.checksum, mtime_ns)

    def verify(self, chunk_id: int) -> bool:
        """Read and check every block (scrub, repair confirmation); False when missing
        or corrupt (then marked for repair)."""
        try:
            for _ in self.iter_read(chunk_id):
                pass
        except (ChunkNotFound, ChunkCorrupt):
            return False
        return True

    # -- listing and accounting --------------------------------------------------------------

    def has(self, chunk_id: int) -> bool:
        """Whether a copy is held (not whether it verifies)."""
        with self._lock:
            return self._holds(chunk_id)

    def chunk_ids(self, start: int = 0, limit: int = DEFAULT_LIST_LIMIT) -> list[int]:
        """Up to `limit` held ids >= start, in id order."""
        with self._lock:
            first = bisect.bisect_left(self._ids, start)
            return self._ids[first : first + limit]

    def list_chunks(self, start: int = 0, limit: int = DEFAULT_LIST_LIMIT) -> list[ChunkStat]:
        """Stats of up to `limit` held chunks with id >= start, in id order. A chunk whose
        header fails verification is left out (and marked for repair)."""
        stats: list[ChunkStat] = []
        for chunk_id in self.chunk_ids(start, limit):
            try:
                stats.append(self.stat(chunk_id))
            except (ChunkNotFound, ChunkCorrupt):
                continue  # deleted meanwhile, or reported by stat() for repair
        return stats

    @property
    def chunk_count(self) -> int:
        with self._lock:
            return len(self._ids)

    @property
    def used_bytes(self) -> int:
        """Bytes of chunk files, headers included."""
        with self._lock:
            return self._used_bytes

    def filesystem_bytes(self) -> tuple[int, int]:
        """(capacity, available) bytes of the filesystem holding the data dir, for the
        heartbeat; available is what an unprivileged writer could still use."""
        info = os.statvfs(self.root)
        return info.f_blocks * info.f_frsize, info.f_bavail * info.f_frsize

    # -- deleting and repair marks -----------------------------------------------------------

    def delete(self, chunk_id: int) -> bool:
        """Remove the copy; False when none was held. Not fsynced: a crash may bring a
        deleted chunk back, and garbage collection then deletes it again."""
        with self._stripe(chunk_id):
            if not self.has(chunk_id):
                return False
            path = self.path_of(chunk_id)
            size = os.stat(path).st_size
            self._ops.unlink(path)
            with self._lock:
                self._ids.pop(bisect.bisect_left(self._ids, chunk_id))
                self._used_bytes -= size
                self._repair.pop(chunk_id, None)
        return True

    def mark_corrupt(self, chunk_id: int) -> None:
        """Put a chunk on the repair list (done by every failed verification)."""
        with self._lock:
            if chunk_id not in self._repair:
                log.warning("chunk %016x failed verification; marked for repair", chunk_id)
            self._repair[chunk_id] = None

    def repair_queue(self) -> list[int]:
        """Chunks marked corrupt, oldest first; a successful re-write clears the mark.
        Kept in memory: after a restart the scrubber finds them again."""
        with self._lock:
            return list(self._repair)

    # -- paths ---------------------------------------------------------------------------

    def path_of(self, chunk_id: int) -> str:
        """Where the chunk's file lives (whether or not it exists)."""
        first, second = _chunk_subdir(chunk_id)
        return os.path.join(self._chunks_dir, first, second, f"{chunk_id:016x}")

    def _holds(self, chunk_id: int) -> bool:
        index = bisect.bisect_left(self._ids, chunk_id)
        return index < len(self._ids) and self._ids[index] == chunk_id


class ChunkWriter:
    """One upload in progress: write() the bytes in order, then commit() or abort().
    Used as a context manager it aborts when the block raises."""

    def __init__(self, store: ChunkStore, chunk_id: int, length: int) -> None:
        self._store = store
        self._ops = store._ops
        self.chunk_id = chunk_id
        self.length = length
        self._data_offset = ChunkHeader.size_for(length)
        self._hasher = ChunkHasher()
        self._fd: int | None = None
        self._temp_path, self._fd = _no_space_guard(lambda: store._new_temp(chunk_id))
        self._done = False

    def write(self, piece: Buffer) -> None:
        """Append the next bytes of the chunk."""
        self._require_open()
        if self._hasher.length + len(piece) > self.length:
            self.abort()
            raise UploadMismatch(f"more than the declared {self.length} bytes")
        fd = self._fd
        assert fd is not None
        self._guarded(lambda: self._ops.pwrite(fd, piece, self._data_offset + self._hasher.length))
        self._hasher.update(piece)

    def commit(self, checksum: int | None = None) -> ChunkStat:
        """Make the chunk durable and visible, after checking its length and (when given)
        its whole xxh64. An identical existing copy makes this a no-op; a different one
        raises ChunkConflict unless it is corrupt, in which case it is replaced."""
        self._require_open()
        if self._hasher.length != self.length:
            self.abort()
            raise UploadMismatch(f"got {self._hasher.length} of {self.length} bytes")
        block_sums, whole = self._hasher.finish()
        if checksum is not None and checksum != whole:
            self.abort()
            raise UploadMismatch("checksum of the received bytes differs from the declared one")
        header = ChunkHeader(self.chunk_id, self.length, whole, tuple(block_sums))
        fd = self._fd
        assert fd is not None
        self._guarded(lambda: self._ops.pwrite(fd, header.encode(), 0))
        self._guarded(lambda: self._ops.fsync(fd))
        self._fd = None
        self._guarded(lambda: self._ops.close(fd))
        stat = self._guarded(lambda: self._store._install(self._temp_path, header))
        self._done = True
        return stat

    def abort(self) -> None:
        """Drop the upload and its temp file; safe to call more than once."""
        if self._done:
            return
        self._done = True
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                self._ops.close(fd)
            except OSError:
                log.exception("closing an aborted upload of %016x", self.chunk_id)
        with contextlib.suppress(FileNotFoundError):
            self._ops.unlink(self._temp_path)

    def _guarded(self, step: Callable[[], _T]) -> _T:
        try:
            return _no_space_guard(step)
        except Exception:
            # Not BaseException: a SimulatedCrash (or a dying process) leaves its temp
            # file behind, as a real crash would, for the next open to remove.
            self.abort()
            raise

    def _require_open(self) -> None:
        if self._done:
            raise ChunkStoreError(f"upload of {self.chunk_id:016x} is already finished")

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, Exception):
            self.abort()  # a no-op after commit


# -- helpers --------------------------------------------------------------------------------


def _no_space_guard(step: Callable[[], _T]) -> _T:
    """Run a write step, turning a full filesystem into NoSpace."""
    try:
        return step()
    except OSError as error:
        if error.errno in _NO_SPACE_ERRNOS:
            raise NoSpace(f"data filesystem full: {error.strerror}") from error
        raise


@contextlib.contextmanager
def _open_chunk(path: str, chunk_id: int) -> Iterator[int]:
    """A chunk file opened read-only; ChunkNotFound when absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ChunkNotFound(f"chunk {chunk_id:016x} is not held here") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _read_header(fd: int, chunk_id: int) -> ChunkHeader:
    raw = os.pread(fd, _HEADER_READ_GUESS, 0)
    if len(raw) == _HEADER_READ_GUESS:
        needed = ChunkHeader.size_for(min(header_length_field(raw), MAX_CHUNK_LENGTH))
        if needed > len(raw):
            raw = os.pread(fd, needed, 0)
    try:
        return ChunkHeader.decode(chunk_id, raw)
    except HeaderError as error:
        raise ChunkCorrupt(chunk_id, str(error)) from None


def _check_file_size(fd: int, header: ChunkHeader) -> int:
    """The file's mtime; ChunkCorrupt when its size disagrees with the header."""
    info = os.fstat(fd)
    if info.st_size != ChunkHeader.size_for(header.length) + header.length:
        raise ChunkCorrupt(header.chunk_id, f"file size {info.st_size} disagrees with header")
    return info.st_mtime_ns


def _read_verified(
    fd: int, header: ChunkHeader, start: int, end: int, piece_size: int
) -> Iterator[bytes]:
    """Bytes [start, end) in pieces, each read in whole blocks and verified first."""
    data_offset = ChunkHeader.size_for(header.length)
    blocks_per_piece = max(1, piece_size // BLOCK_SIZE)
    first_block = start // BLOCK_SIZE
    end_block = block_count(end)
    for piece_block in range(first_block, end_block, blocks_per_piece):
        piece_end_block = min(piece_block + blocks_per_piece, end_block)
        block_start = piece_block * BLOCK_SIZE
        block_end = min(piece_end_block * BLOCK_SIZE, header.length)
        # pread into a fresh bytes object: the whole-block case is then returned as is,
        # with no copy beyond the kernel's (a bytearray + bytes() costs a second one).
        raw = os.pread(fd, block_end - block_start, data_offset + block_start)
        if len(raw) != block_end - block_start:
            raise ChunkCorrupt(header.chunk_id, "short read")
        bad = first_bad_block(memoryview(raw), piece_block, header.block_sums)
        if bad is not None:
            raise ChunkCorrupt(header.chunk_id, f"block {bad} checksum mismatch")
        lo = max(start, block_start) - block_start
        hi = min(end, block_end) - block_start
        yield raw if (lo, hi) == (0, len(raw)) else raw[lo:hi]


def _check_id(chunk_id: int) -> None:
    if not 0 <= chunk_id < 2**64:
        raise ValueError(f"chunk id {chunk_id} is not a u64")


def _chunk_subdir(chunk_id: int) -> tuple[str, str]:
    return f"{chunk_id & 0xFF:02x}", f"{(chunk_id >> 8) & 0xFF:02x}"


def _tail(path: str) -> tuple[str, str]:
    parent = os.path.dirname(path)
    return os.path.basename(os.path.dirname(parent)), os.path.basename(parent)


def _parse_chunk_name(name: str) -> int | None:
    if len(name) != 16:
        return None
    try:
        return int(name, 16)
    except ValueError:
        return None


def _subdirs(path: str) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(entry.path for entry in entries if entry.is_dir(follow_symlinks=False))
