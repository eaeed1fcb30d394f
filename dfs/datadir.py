"""Which cluster and server a data directory belongs to.

Every server records its kind, id and cluster id in `DIR/identity.toml` the
first time it starts, and refuses a directory of another cluster, kind or id:
a mixed-up command line must never serve one server's state as another's.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

IDENTITY_FILE = "identity.toml"
INSECURE_CLUSTER_ID = "insecure"


class DataDirError(Exception):
    """The data directory belongs to someone else or cannot be used."""


@dataclass(frozen=True)
class Identity:
    kind: str  # "meta" or "data"
    server_id: int
    cluster_id: str


def write_atomically(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, fsync dir: the file is absent or whole."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_identity(directory: Path) -> Identity | None:
    path = directory / IDENTITY_FILE
    try:
        fields = tomllib.loads(path.read_text())
        return Identity(str(fields["kind"]), int(fields["server_id"]), str(fields["cluster_id"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, tomllib.TOMLDecodeError) as err:
        raise DataDirError(f"{path} is unreadable or malformed: {err}") from err


def claim(directory: Path, wanted: Identity) -> bool:
    """Record `wanted` in an empty dir, or check it matches; True when the dir was new."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataDirError(f"cannot create data dir {directory}: {err.strerror}") from err
    found = read_identity(directory)
    if found is None:
        leftovers = [p.name for p in directory.iterdir() if not p.name.startswith(".")]
        if leftovers:
            raise DataDirError(
                f"data dir {directory} is not empty and has no {IDENTITY_FILE}; "
                f"refusing to adopt it ({', '.join(sorted(leftovers)[:3])} ...)"
            )
        text = (
            f'kind = "{wanted.kind}"\nserver_id = {wanted.server_id}\n'
            f'cluster_id = "{wanted.cluster_id}"\n'
        )
        write_atomically(directory / IDENTITY_FILE, text.encode())
        return True
    if found.cluster_id != wanted.cluster_id:
        raise DataDirError(
            f"data dir {directory} belongs to cluster {found.cluster_id}, "
            f"not {wanted.cluster_id}"
        )
    if found.kind != wanted.kind or found.server_id != wanted.server_id:
        raise DataDirError(
            f"data dir {directory} belongs to {found.kind} server {found.server_id}, "
            f"not {wanted.kind} server {wanted.server_id}"
        )
    return False
