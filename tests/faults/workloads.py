"""Workloads with recorded histories, run while the nemesis works.

- KV register: clients put, get and compare-and-set a few keys through the diagnostic
  KV; every call and answer goes into a History for the linearizability checker.
- Small files: writers create files with unique contents, fsync and close them; a
  version is acknowledged once close returns.
- Directory: clients create, mkdir, unlink, rename and stat names in one shared
  directory; the directory model checks the history.
- Shared files: one writer rewrites a few files whole (same length each version),
  a reader on another mount reads them whole; every read is kept for the mixed-read
  checker.
An operation that fails or times out stays unacknowledged (pending): it may or may
not have happened, and the checkers allow both.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dfs.auth import ClusterSecret
from dfs.client.kv import KvClient
from dfs.client.retry import RetryPolicy
from dfs.faults.files import FileVersions
from dfs.faults.history import History

log = logging.getLogger(__name__)
KV_POLICY = RetryPolicy(deadline_s=15.0, attempt_timeout_s=2.0)
SHARED_FILE_BYTES = 64 * 1024


@dataclass
class FileRecords:
    """Versions per path (one writer per path) and every whole-file read."""

    versions: dict[str, FileVersions] = field(default_factory=dict)
    reads: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attempt(self, path: str, content: bytes) -> int:
        with self.lock:
            return self.versions.setdefault(path, FileVersions()).attempt(content)

    def acknowledge(self, path: str, index: int) -> None:
        with self.lock:
            self.versions[path].acknowledge(index)

    def read(self, path: str, content: bytes) -> None:
        with self.lock:
            self.reads.append((path, content))


# -- the KV register ----------------------------------------------------------------


class KvWorkload:
    def __init__(self, addrs: list[str], secret: ClusterSecret, history: History,
                 seed: int, clients: int = 3, readers: int = 2, keys: int = 3,
                 pace_s: float = 0.01) -> None:
        self.addrs, self.secret, self.history = addrs, secret, history
        self.seed, self.pace_s = seed, pace_s
        # Readers only read: they stay with whichever leader answers them, so a
        # deposed leader that still answers reads is caught serving stale values.
        self.clients, self.readers = clients, readers
        self.keys = [b"reg%d" % i for i in range(keys)]
        self.errors = 0

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._main(stop))

    async def _main(self, stop: threading.Event) -> None:
        await asyncio.gather(
            *(self._client(i, stop) for i in range(self.clients + self.readers)))

    async def _client(self, client_id: int, stop: threading.Event) -> None:
        rng = random.Random(self.seed * 1000 + client_id)
        client = KvClient(self.addrs, self.secret, KV_POLICY, client_name=f"faults{client_id}")
        while not stop.is_set():
            try:
                await client.open()
                break
            except Exception:
                await asyncio.sleep(0.2)
        last_seen: dict[bytes, bytes | None] = {}
        count = 0
        try:
            while not stop.is_set():
                count += 1
                key = rng.choice(self.keys)
                await self._one_op(client, client_id, rng, key, b"c%d-%d" % (client_id, count),
                                   last_seen, "get" if client_id >= self.clients else None)
                await asyncio.sleep(self.pace_s)
            for key in self.keys:  # final reads: the state every replica must agree on
                await self._one_op(client, client_id, rng, key, b"", last_seen, kind="get")
        finally:
            await client.close()

    async def _one_op(self, client: KvClient, client_id: int, rng: random.Random, key: bytes,
                      value: bytes, last_seen: dict[bytes, bytes | None],
                      kind: str | None = None) -> None:
        kind = kind or rng.choices(["get", "put", "cas"], weights=[4, 3, 3])[0]
        expected = last_seen.get(key)
        if kind == "get":
            handle = self.history.invoke(client_id, "get", key)
        elif kind == "put":
            handle = self.history.invoke(client_id, "put", key, value)
        else:
            handle = self.history.invoke(client_id, "cas", key, value, expected)
        try:
            if kind == "get":
                found = await client.get(key)
                self.history.complete(handle, found)
                last_seen[key] = found
            elif kind == "put":
                await client.put(key, value)
                self.history.complete(handle, None)
                last_seen[key] = value
            else:
                swapped, found = await client.cas(key, expected, value)
                self.history.complete(handle, swapped)
                last_seen[key] = found
        except Exception as err:  # unanswered: it stays pending in the history
            self.errors += 1
            log.debug("kv %s %r: %s", kind, key, err)


# -- files through the mount ---------------------------------------------------------


def unique_content(tag: str, size: int, rng: random.Random) -> bytes:
    """Bytes no other version holds: the tag, then seeded noise."""
    head = f"{tag}\n".encode()
    return (head + rng.randbytes(max(0, size - len(head))))[:size]


def write_whole(path: Path, content: bytes, create: bool) -> None:
    flags = os.O_WRONLY | (os.O_CREAT | os.O_EXCL if create else 0)
    fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)  # close's flush is part of the acknowledgement


def small_file_writer(mnt: Path, records: FileRecords, writer: int, seed: int,
                      stop: threading.Event, pace_s: float = 0.02) -> None:
    rng = random.Random(seed * 7919 + writer)
    directory = mnt / "small" / f"w{writer}"
    while not stop.is_set():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            break
        except OSError:
            time.sleep(0.2)
    count = 0
    while not stop.is_set():
        count += 1
        path = directory / f"f{count}"
        content = unique_content(f"small {writer} {count}", rng.randrange(1, 32 * 1024), rng)
        index = records.attempt(str(path.relative_to(mnt)), content)
        try:
            write_whole(path, content, create=True)
            records.acknowledge(str(path.relative_to(mnt)), index)
        except OSError as err:
            log.debug("write %s: %s", path, err)
        time.sleep(pace_s)


def shared_file_rewriter(mnt: Path, records: FileRecords, seed: int, stop: threading.Event,
                         files: int = 3, pace_s: float = 0.05) -> None:
    rng = random.Random(seed * 104729)
    created: set[int] = set()
    count = 0
    while not stop.is_set():
        count += 1
        which = rng.randrange(files)
        path = mnt / f"shared{which}"
        content = unique_content(f"shared {which} v{count}", SHARED_FILE_BYTES, rng)
        index = records.attempt(path.name, content)
        try:
            write_whole(path, content, create=which not in created)
            records.acknowledge(path.name, index)
            created.add(which)
        except FileExistsError:
            created.add(which)  # an earlier create that answered with an error had applied
        except OSError as err:
            log.debug("rewrite %s: %s", path, err)
        time.sleep(pace_s)


def shared_file_reader(mnt: Path, records: FileRecords, seed: int, stop: threading.Event,
                       files: int = 3, pace_s: float = 0.02) -> None:
    rng = random.Random(seed * 15485863)
    while not stop.is_set():
        path = mnt / f"shared{rng.randrange(files)}"
        try:
            content = path.read_bytes()
        except OSError:
            content = None
        if content is not None:
            records.read(path.name, content)
        time.sleep(pace_s)


# -- metadata operations on a shared directory ---------------------------------------

DIR_NAMES = [b"n%d" % i for i in range(6)]
ANSWERED_ERRNOS = frozenset({0, errno.ENOENT, errno.EEXIST, errno.EISDIR, errno.ENOTDIR})


def directory_worker(mnt: Path, history: History, client: int, seed: int,
                     stop: threading.Event, pace_s: float = 0.02) -> None:
    """create, mkdir, unlink, rename and stat in one shared directory; each answer
    (an errno) recorded for the directory model."""
    rng = random.Random(seed * 31337 + client)
    shared = mnt / "dirs" / "d0"
    while not stop.is_set():
        try:
            shared.mkdir(parents=True, exist_ok=True)
            break
        except OSError:
            time.sleep(0.2)
    key = b"dirs/d0"
    base = os.fsencode(shared)
    while not stop.is_set():
        kind = rng.choices(["create", "mkdir", "unlink", "rename", "stat"],
                           weights=[3, 1, 2, 3, 3])[0]
        name, source = rng.choice(DIR_NAMES), rng.choice(DIR_NAMES)
        handle = history.invoke(client, kind, key, name, source if kind == "rename" else None)
        outcome = _directory_call(kind, base, name, source)
        if outcome in ANSWERED_ERRNOS:
            history.complete(handle, outcome)  # otherwise unanswered: it stays pending
        time.sleep(pace_s)


def _directory_call(kind: str, base: bytes, name: bytes, source: bytes) -> int:
    path = os.path.join(base, name)
    try:
        if kind == "create":
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        elif kind == "mkdir":
            os.mkdir(path)
        elif kind == "stat":
            os.lstat(path)
        elif kind == "unlink":
            os.unlink(path)
        else:
            os.rename(os.path.join(base, source), path)
    except OSError as err:
        return err.errno or -1
    return 0
