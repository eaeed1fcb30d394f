"""Snapshot files of a metadata replica: the replicated state as of one slot.

Owns the file format (magic, version, slot, configuration, payload length and
xxh64 checksum, payload) and its atomic write (temp file, fsync, rename, fsync
dir), so a file is absent or whole. A file that fails its checksum is
corruption, never silently skipped: the WAL before it may be gone.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import xxhash

from dfs.paxos.config import Config, decode_config, encode_config

log = logging.getLogger(__name__)

MAGIC = b"DFSSNAP1"
FORMAT_VERSION = 1
HEAD = struct.Struct(">8sIQI")  # magic, version, slot, config length
TAIL = struct.Struct(">QQ")  # payload length, xxh64 of payload
SUFFIX = ".snap"
KEEP = 2  # the newest, and the one before it while a transfer may still read it


class SnapshotCorruption(Exception):
    """A snapshot file that is not whole: startup must stop."""


@dataclass(frozen=True)
class Snapshot:
    slot: int
    config: Config
    payload: bytes
    path: Path | None = None


def file_name(slot: int) -> str:
    return f"{slot:020d}{SUFFIX}"


def slot_of(path: Path) -> int:
    """The slot a snapshot file covers, from its name."""
    return int(path.name.removesuffix(SUFFIX))


def encode(slot: int, config: Config, payload: bytes) -> bytes:
    return encode_head(slot, config, payload) + payload


def encode_head(slot: int, config: Config, payload: bytes) -> bytes:
    """Everything of the file before the payload."""
    config_bytes = encode_config(config)
    return (
        HEAD.pack(MAGIC, FORMAT_VERSION, slot, len(config_bytes))
        + config_bytes
        + TAIL.pack(len(payload), xxhash.xxh64_intdigest(payload))
    )


def decode(data: bytes, where: str) -> Snapshot:
    try:
        magic, version, slot, config_length = HEAD.unpack_from(data, 0)
        if magic != MAGIC or version != FORMAT_VERSION:
            raise SnapshotCorruption(f"{where}: not a dfs snapshot of format {FORMAT_VERSION}")
        start = HEAD.size
        config, _ = decode_config(data[start : start + config_length])
        length, checksum = TAIL.unpack_from(data, start + config_length)
        payload = data[start + config_length + TAIL.size :]
    except (struct.error, ValueError, IndexError) as err:
        raise SnapshotCorruption(f"{where}: unreadable snapshot: {err}") from err
    if len(payload) != length or xxhash.xxh64_intdigest(payload) != checksum:
        raise SnapshotCorruption(f"{where}: snapshot payload fails its checksum")
    return Snapshot(slot, config, payload)


def write(directory: Path, slot: int, config: Config, payload: bytes) -> Path:
    """Atomically write the snapshot of `slot` and drop all but the newest KEEP."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(slot)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # Head and payload written apart: no copy of a payload of tens of MB.
        for part in (encode_head(slot, config, payload), payload):
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return adopt(directory, tmp, slot)


def adopt(directory: Path, whole_file: Path, slot: int) -> Path:
    """Make a complete, fsynced file the snapshot of `slot` (rename, fsync dir) and
    drop all but the newest KEEP."""
    path = directory / file_name(slot)
    os.rename(whole_file, path)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    for old in sorted(directory.glob("*" + SUFFIX))[:-KEEP]:
        old.unlink()
    return path


def latest(directory: Path) -> Snapshot | None:
    """The newest snapshot in `directory`, verified; None when there is none."""
    for stale in directory.glob("*.tmp"):
        stale.unlink()  # a crash before the rename: never a snapshot
    paths = sorted(directory.glob("*" + SUFFIX))
    if not paths:
        return None
    snap = decode(paths[-1].read_bytes(), str(paths[-1]))
    return Snapshot(snap.slot, snap.config, snap.payload, paths[-1])
