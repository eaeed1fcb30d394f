"""A child process that runs vocabulary operations on a real local directory with the
caller's credentials, answering one JSON line per request on stdin/stdout.

Started as root; for each request it sets its effective uid, gid and supplementary
groups to the caller's (keeping root as the saved uid so the next request can switch
again), so the kernel checks permissions exactly as for that user.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
import sys
from collections.abc import Callable

from tests.posix.vocab import (
    OK,
    TYPE_BITS,
    Creds,
    decode_name,
    decode_path,
    errno_result,
    names_text,
    parse_mode,
    stat_field,
)

_LIBC = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_UTIME_NOW = (1 << 30) - 1
_UTIME_OMIT = (1 << 30) - 2
_RENAME_FLAGS = {"0": 0, "NOREPLACE": 1, "EXCHANGE": 2}
_XATTR_FLAGS = {"0": 0, "CREATE": 1, "REPLACE": 2}
_OPEN_FLAGS = {
    "O_RDONLY": os.O_RDONLY,
    "O_WRONLY": os.O_WRONLY,
    "O_RDWR": os.O_RDWR,
    "O_TRUNC": os.O_TRUNC,
}
_ACCESS = {"F_OK": os.F_OK, "R_OK": os.R_OK, "W_OK": os.W_OK, "X_OK": os.X_OK}


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_current = Creds(0, 0)


def become(creds: Creds) -> None:
    global _current
    if creds == _current:
        return
    os.setresuid(-1, 0, -1)
    os.setresgid(-1, 0, -1)
    os.setgroups(list(creds.groups))
    os.setresgid(-1, creds.gid, -1)
    os.setresuid(-1, creds.uid, -1)
    _current = creds


def _check(result: int) -> None:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _flags(text: str, table: dict[str, int]) -> int:
    value = 0
    for part in text.split("|"):
        value |= table[part]
    return value


def _time(text: str) -> _Timespec:
    if text == "now":
        return _Timespec(0, _UTIME_NOW)
    if text == "omit":
        return _Timespec(0, _UTIME_OMIT)
    ns = int(text)
    return _Timespec(ns // 1_000_000_000, ns % 1_000_000_000)


def _xattr_get(path: bytes, name: str, size: str, follow: bool) -> str:
    call = _LIBC.getxattr if follow else _LIBC.lgetxattr
    call.restype = ctypes.c_ssize_t
    buffer = ctypes.create_string_buffer(max(int(size), 1) if int(size) else 1 << 16)
    length = call(path, decode_name(name), buffer, ctypes.c_size_t(len(buffer)))
    _check(length)
    return buffer.raw[:length].decode("latin-1") or "-"


def _xattr_list(path: bytes, size: str) -> str:
    _LIBC.listxattr.restype = ctypes.c_ssize_t
    buffer = ctypes.create_string_buffer(max(int(size), 1) if int(size) else 1 << 16)
    length = _LIBC.listxattr(path, buffer, ctypes.c_size_t(len(buffer)))
    _check(length)
    names = [n.decode("latin-1") for n in buffer.raw[:length].split(b"\0") if n]
    return names_text(names)


def _write(path: bytes, offset: str, length: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"x" * int(length), int(offset))
    finally:
        os.close(fd)


def _open(path: bytes, flags: str) -> None:
    os.close(os.open(path, _flags(flags, _OPEN_FLAGS) | os.O_NONBLOCK))


def _mknod(path: bytes, kind: str, mode: str, rdev: str) -> None:
    os.mknod(path, parse_mode(mode) | TYPE_BITS[kind], int(rdev))


def _utimensat(path: bytes, atime: str, mtime: str) -> None:
    times = (_Timespec * 2)(_time(atime), _time(mtime))
    _check(_LIBC.utimensat(_AT_FDCWD, path, times, 0))


def _stat(path: bytes, field: str, follow: bool) -> str:
    info = os.stat(path, follow_symlinks=follow)
    return stat_field(field, info.st_mode, info.st_uid, info.st_gid, info.st_nlink, info.st_size)


def _tree(root: bytes) -> str:
    """Every entry below root: path, type, mode, uid, gid, nlink, size (reg/lnk only)."""
    rows = []
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(directory, name)
            info = os.lstat(path)
            kind = stat.S_IFMT(info.st_mode)
            size = info.st_size if kind in (stat.S_IFREG, stat.S_IFLNK) else 0
            relative = os.path.relpath(path, root).decode("latin-1")
            fields = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, info.st_nlink, size)
            rows.append([relative, kind, *fields])
    return json.dumps(sorted(rows))


def _reset(base: str, uid: str, gid: str, mode: str) -> str:
    become(Creds(0, 0))
    root = os.path.join(base, f"case-{len(os.listdir(base))}")
    os.mkdir(root)
    os.chown(root, int(uid), int(gid))
    os.chmod(root, parse_mode(mode))
    os.chdir(root)
    return OK


def _statfs(field: str) -> str:
    if field != "namemax":
        raise ValueError(field)
    return str(os.statvfs(".").f_namemax)


_OPS: dict[str, Callable[..., object]] = {
    "mkdir": lambda p, m: os.mkdir(decode_path(p), parse_mode(m)),
    "mknod": lambda p, k, m, r: _mknod(decode_path(p), k, m, r),
    "create": lambda p, m: os.close(
        os.open(decode_path(p), os.O_CREAT | os.O_EXCL | os.O_WRONLY, parse_mode(m))
    ),
    "open": lambda p, f: _open(decode_path(p), f),
    "unlink": lambda p: os.unlink(decode_path(p)),
    "rmdir": lambda p: os.rmdir(decode_path(p)),
    "rename": lambda a, b: os.rename(decode_path(a), decode_path(b)),
    "renameat2": lambda a, b, f: _check(
        _LIBC.renameat2(
            _AT_FDCWD, decode_path(a), _AT_FDCWD, decode_path(b), _flags(f, _RENAME_FLAGS)
        )
    ),
    "link": lambda a, b: os.link(decode_path(a), decode_path(b), follow_symlinks=False),
    "symlink": lambda t, p: os.symlink(decode_path(t), decode_path(p)),
    "readlink": lambda p: os.readlink(decode_path(p)).decode("latin-1"),
    "chmod": lambda p, m: os.chmod(decode_path(p), parse_mode(m)),
    "chown": lambda p, u, g: os.chown(decode_path(p), int(u), int(g)),
    "lchown": lambda p, u, g: os.lchown(decode_path(p), int(u), int(g)),
    "truncate": lambda p, s: os.truncate(decode_path(p), int(s)),
    "write": lambda p, o, n: _write(decode_path(p), o, n),
    "utimensat": lambda p, a, m: _utimensat(decode_path(p), a, m),
    "stat": lambda p, f: _stat(decode_path(p), f, True),
    "lstat": lambda p, f: _stat(decode_path(p), f, False),
    "setxattr": lambda p, n, v, f: os.setxattr(
        decode_path(p), decode_name(n), decode_name(v), _flags(f, _XATTR_FLAGS)
    ),
    "lsetxattr": lambda p, n, v, f: os.setxattr(
        decode_path(p),
        decode_name(n),
        decode_name(v),
        _flags(f, _XATTR_FLAGS),
        follow_symlinks=False,
    ),
    "getxattr": lambda p, n, s: _xattr_get(decode_path(p), n, s, True),
    "lgetxattr": lambda p, n, s: _xattr_get(decode_path(p), n, s, False),
    "listxattr": lambda p, s: _xattr_list(decode_path(p), s),
    "removexattr": lambda p, n: os.removexattr(decode_path(p), decode_name(n)),
    "readdir": lambda p: names_text([n.decode("latin-1") for n in os.listdir(decode_path(p))]),
    "statfs": _statfs,
}


def run(creds: Creds, op: str, args: list[str]) -> str:
    if op == "reset":
        return _reset(*args)
    if op == "tree":
        become(Creds(0, 0))
        return _tree(b".")
    become(creds)
    try:
        if op == "access":
            # access(2) checks the real ids; this process switches only the effective
            # ones, so ask with AT_EACCESS to get the caller's answer.
            path = decode_path(args[0])
            _check(_LIBC.faccessat(_AT_FDCWD, path, _flags(args[1], _ACCESS), 0x200))
            return OK
        value = _OPS[op](*args)
    except OSError as error:
        return errno_result(error.errno or errno.EIO)
    return OK if value is None else str(value)


def main() -> None:
    os.umask(0)
    # Load what is imported lazily now, while root can still read every module.
    decode_name("\\x41")
    "x".encode("latin-1")
    for line in sys.stdin:
        request = json.loads(line)
        result = run(Creds.parse(request["creds"]), request["op"], request["args"])
        sys.stdout.write(json.dumps({"id": request["id"], "result": result}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
