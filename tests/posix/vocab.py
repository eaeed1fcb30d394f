"""The vocabulary every POSIX target speaks: syscall-named operations with string
arguments, and results as strings ("0", an errno name, or a value).

Shared by the errno tables, the differential test and every target (the namespace state
machine here; later a FUSE mount and the gRPC service), so a row means the same thing
everywhere. Standard library only: the local worker imports it as a plain script.
"""

from __future__ import annotations

import errno
import re
import stat
from dataclasses import dataclass

OK = "0"
_REPEAT = re.compile(r"(\d+)\*(.)")

# The operations, with their argument names; paths are relative to the test root.
OPERATIONS: dict[str, tuple[str, ...]] = {
    "mkdir": ("path", "mode"),
    "mknod": ("path", "type", "mode", "rdev"),
    "create": ("path", "mode"),  # open(O_CREAT|O_EXCL|O_WRONLY) + close
    "open": ("path", "flags"),  # flags: O_RDONLY|O_WRONLY|O_RDWR|O_TRUNC; no O_CREAT
    "unlink": ("path",),
    "rmdir": ("path",),
    "rename": ("old", "new"),
    "renameat2": ("old", "new", "flags"),  # flags: 0, NOREPLACE, EXCHANGE
    "link": ("old", "new"),
    "symlink": ("target", "path"),
    "readlink": ("path",),
    "chmod": ("path", "mode"),
    "chown": ("path", "uid", "gid"),  # follows symlinks; -1 leaves a field
    "lchown": ("path", "uid", "gid"),
    "truncate": ("path", "size"),
    "write": ("path", "offset", "length"),  # open(O_WRONLY) + pwrite of 'x' bytes + close
    "utimensat": ("path", "atime", "mtime"),  # each: now, omit or ns
    "stat": ("path", "field"),  # field: type mode uid gid nlink size
    "lstat": ("path", "field"),
    "setxattr": ("path", "name", "value", "flags"),  # flags: 0, CREATE, REPLACE
    "lsetxattr": ("path", "name", "value", "flags"),
    "getxattr": ("path", "name", "size"),  # size 0: any
    "lgetxattr": ("path", "name", "size"),
    "listxattr": ("path", "size"),  # names sorted, comma-joined; "-" when none
    "removexattr": ("path", "name"),
    "access": ("path", "mask"),  # F_OK or R_OK|W_OK|X_OK
    "readdir": ("path",),  # names sorted, comma-joined; "-" when empty
    "statfs": ("field",),  # namemax
}

TYPE_NAMES = {
    stat.S_IFREG: "reg",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "lnk",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "sock",
    stat.S_IFCHR: "chr",
    stat.S_IFBLK: "blk",
}
TYPE_BITS = {name: bits for bits, name in TYPE_NAMES.items()}


@dataclass(frozen=True)
class Creds:
    """The caller of one operation."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()

    def text(self) -> str:
        groups = ",".join(str(group) for group in self.groups)
        return f"{self.uid}:{self.gid}" + (f":{groups}" if groups else "")

    @classmethod
    def parse(cls, text: str) -> Creds:
        parts = text.split(":")
        if len(parts) == 1:
            return cls(int(parts[0]), int(parts[0]))
        groups = tuple(int(g) for g in parts[2].split(",") if g) if len(parts) > 2 else ()
        return cls(int(parts[0]), int(parts[1]), groups)


ROOT = Creds(0, 0)


def errno_result(code: int) -> str:
    return OK if code == 0 else errno.errorcode.get(code, str(code))


def mode_text(mode: int) -> str:
    return f"0{mode & 0o7777:o}" if mode & 0o7777 else "0"


def parse_mode(text: str) -> int:
    return int(text, 8)


def names_text(names: list[str]) -> str:
    return ",".join(sorted(names)) or "-"


def stat_field(field: str, mode: int, uid: int, gid: int, nlink: int, size: int) -> str:
    kind = TYPE_NAMES[stat.S_IFMT(mode)]
    values = {
        "type": kind,
        "mode": mode_text(mode),
        "uid": str(uid),
        "gid": str(gid),
        "nlink": str(nlink),
        "size": str(size),
    }
    return values[field]


def decode_name(text: str) -> bytes:
    """Table text -> name bytes: backslash escapes (\\xff) and N*c for c repeated N times."""
    text = _REPEAT.sub(lambda match: match[2] * int(match[1]), text)
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def decode_path(text: str) -> bytes:
    return b"/".join(decode_name(part) if part else b"" for part in text.split("/"))
