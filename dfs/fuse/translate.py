"""Conversions between dfs's wire types and pyfuse3's: attributes, callers, kinds."""

from __future__ import annotations

import stat

import pyfuse3

from dfs.rpc import common_pb2

KIND_BITS = {
    common_pb2.FILE_KIND_REGULAR: stat.S_IFREG,
    common_pb2.FILE_KIND_DIRECTORY: stat.S_IFDIR,
    common_pb2.FILE_KIND_SYMLINK: stat.S_IFLNK,
    common_pb2.FILE_KIND_FIFO: stat.S_IFIFO,
    common_pb2.FILE_KIND_SOCKET: stat.S_IFSOCK,
    common_pb2.FILE_KIND_CHAR_DEVICE: stat.S_IFCHR,
    common_pb2.FILE_KIND_BLOCK_DEVICE: stat.S_IFBLK,
}
KIND_OF_BITS = {bits: kind for kind, bits in KIND_BITS.items()}


def kind_of_mode(mode: int) -> int:
    """The dfs file kind named by the S_IFMT bits of `mode` (0 if none)."""
    return KIND_OF_BITS.get(stat.S_IFMT(mode), 0)


def entry_attributes(
    attr: common_pb2.Attr, attr_timeout_s: float, entry_timeout_s: float
) -> pyfuse3.EntryAttributes:
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = attr.ino
    entry.generation = attr.generation
    entry.st_mode = KIND_BITS.get(attr.kind, 0) | attr.mode
    entry.st_nlink = attr.nlink
    entry.st_uid = attr.uid
    entry.st_gid = attr.gid
    entry.st_rdev = attr.rdev
    entry.st_size = attr.size
    entry.st_blksize = attr.blksize or 4096
    entry.st_blocks = (attr.size + 511) // 512
    entry.st_atime_ns = attr.atime_ns
    entry.st_mtime_ns = attr.mtime_ns
    entry.st_ctime_ns = attr.ctime_ns
    entry.entry_timeout = entry_timeout_s
    entry.attr_timeout = attr_timeout_s
    return entry


def negative_entry(timeout_s: float) -> pyfuse3.EntryAttributes:
    """A lookup's "no such name" that the kernel may cache for `timeout_s`."""
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = 0
    entry.entry_timeout = timeout_s
    return entry


NOBODY = 65534  # the uid and gid root is mapped to on a root_squash mount


def squash_root(caller: common_pb2.Caller) -> common_pb2.Caller:
    """Root's requests as nobody's (its group 0 too): a client host's root is not
    the cluster's root. Other users pass unchanged, as with NFS."""
    if caller.uid != 0:
        return caller
    return common_pb2.Caller(
        uid=NOBODY,
        gid=NOBODY if caller.gid == 0 else caller.gid,
        groups=sorted({NOBODY if g == 0 else g for g in caller.groups}),
        pid=caller.pid,
    )


def caller_of(ctx: pyfuse3.RequestContext) -> common_pb2.Caller:
    """The caller of one request, with its supplementary groups.

    pyfuse3's context has uid, gid and pid only, so the groups come from
    /proc/PID/status, read for every request: a process may change its groups
    between two calls (servers switching users do), and a cached answer would then
    grant or refuse with groups the caller no longer has.
    """
    try:
        groups = sorted(pyfuse3.get_sup_groups(ctx.pid))
    except (OSError, ValueError):
        groups = []  # the process is gone; its request still gets an answer
    return common_pb2.Caller(uid=ctx.uid, gid=ctx.gid, groups=groups, pid=ctx.pid)
