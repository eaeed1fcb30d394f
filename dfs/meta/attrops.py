"""setattr (chmod, chown, truncate, utimensat) and extended attributes.

Follows setattr_prepare/notify_change and xattr_permission of the Linux VFS: who may
change what, which bits a change clears, and the errno of each refusal.
"""

from __future__ import annotations

import errno

from dfs.meta import fileops, perms
from dfs.meta.inode import Inode
from dfs.meta.ops import RemoveXattr, SetAttr, SetXattr
from dfs.meta.results import AttrResult, ErrnoResult
from dfs.meta.state import NamespaceState
from dfs.meta.types import (
    MAX_FILE_SIZE,
    PERM_MASK,
    R_OK,
    S_ISGID,
    S_ISUID,
    S_ISVTX,
    W_OK,
    XATTR_CREATE,
    XATTR_NAME_MAX,
    XATTR_REPLACE,
    XATTR_SIZE_MAX,
    XATTR_TOTAL_MAX,
    Caller,
    Kind,
    TimeSet,
)

USER_PREFIX = b"user."
TRUSTED_PREFIX = b"trusted."
SECURITY_PREFIX = b"security."
SYSTEM_PREFIX = b"system."


def set_attr(state: NamespaceState, op: SetAttr) -> AttrResult:
    inode = state.inodes.get(op.ino)
    if inode is None:
        return AttrResult(errno.ENOENT)
    failure = _setattr_error(inode, op)
    if failure:
        return AttrResult(failure)
    state.changing(inode)
    caller = op.caller
    now = state.now
    if op.size is not None:
        if op.size != inode.size:
            fileops.resize(state, inode, op.size)
        inode.mtime = now
        inode.mode = perms.without_privileges(inode, caller)
    if op.uid is not None or op.gid is not None:
        _chown(inode, op)
    if op.mode is not None:
        mode = op.mode & PERM_MASK
        if not perms.in_group_or_root(inode, caller, inode.gid):
            mode &= ~S_ISGID
        inode.mode = mode
    inode.atime = _new_time(op.atime_set, op.atime_ns, inode.atime, now)
    inode.mtime = _new_time(op.mtime_set, op.mtime_ns, inode.mtime, now)
    inode.ctime = now
    return AttrResult(0, state.attr(inode))


def _new_time(how: TimeSet, value: int, current: int, now: int) -> int:
    if how == TimeSet.NOW:
        return now
    if how == TimeSet.VALUE:
        return value
    return current


def _setattr_error(inode: Inode, op: SetAttr) -> int:
    caller = op.caller
    if op.size is not None:
        if inode.kind == Kind.DIRECTORY:
            return errno.EISDIR
        if inode.kind != Kind.REGULAR or op.size < 0:
            return errno.EINVAL
        if not perms.permitted(inode, caller, W_OK):
            return errno.EACCES
        if op.size > MAX_FILE_SIZE:
            return errno.EFBIG
    owner = perms.owner_or_root(inode, caller)
    if op.uid is not None and not _may_chown(inode, caller, op.uid):
        return errno.EPERM
    if op.gid is not None and not _may_chgrp(inode, caller, op.gid):
        return errno.EPERM
    if op.mode is not None and not owner:
        return errno.EPERM
    times = (op.atime_set, op.mtime_set)
    if times == (TimeSet.NOW, TimeSet.NOW):
        # utimensat(NULL): the owner, root, or anyone who may write the file.
        if not owner and not perms.permitted(inode, caller, W_OK):
            return errno.EACCES
    elif times != (TimeSet.OMIT, TimeSet.OMIT) and not owner:
        return errno.EPERM
    return 0


def _may_chown(inode: Inode, caller: Caller, uid: int) -> bool:
    """chown_ok: root, or the owner \"changing\" the owner to itself."""
    return caller.is_root or caller.uid == inode.uid == uid


def _may_chgrp(inode: Inode, caller: Caller, gid: int) -> bool:
    """chgrp_ok: root, or the owner giving the file its own group or one of theirs."""
    if caller.is_root:
        return True
    return caller.uid == inode.uid and (gid == inode.gid or caller.in_group(gid))


def _chown(inode: Inode, op: SetAttr) -> None:
    if inode.kind != Kind.DIRECTORY:
        # Every chown of a non-directory drops suid; sgid goes when it means
        # "setgid" (group-executable) or the caller may not keep it.
        mode = inode.mode & ~S_ISUID
        if perms.should_drop_sgid(inode, op.caller):
            mode &= ~S_ISGID
        inode.mode = mode
    if op.uid is not None:
        inode.uid = op.uid
    if op.gid is not None:
        inode.gid = op.gid


# ---- extended attributes -------------------------------------------------------------


def xattr_permission(inode: Inode, caller: Caller, name: bytes, write: bool) -> int:
    """xattr_permission() of the VFS plus the capability rules of each namespace."""
    if name.startswith(SYSTEM_PREFIX):
        return errno.EOPNOTSUPP if write else errno.ENODATA
    if name.startswith(SECURITY_PREFIX):
        return errno.EPERM if write and not caller.is_root else 0
    if name.startswith(TRUSTED_PREFIX):
        if not caller.is_root:
            return errno.EPERM if write else errno.ENODATA
        return 0
    if name.startswith(USER_PREFIX):
        if inode.kind not in (Kind.REGULAR, Kind.DIRECTORY):
            return errno.EPERM if write else errno.ENODATA
        if (
            write
            and inode.kind == Kind.DIRECTORY
            and inode.mode & S_ISVTX
            and not perms.owner_or_root(inode, caller)
        ):
            return errno.EPERM
    if not perms.permitted(inode, caller, W_OK if write else R_OK):
        return errno.EACCES
    if not name.startswith(USER_PREFIX):
        return errno.EOPNOTSUPP
    return 0


def xattr_name_error(name: bytes) -> int:
    if not name or len(name) > XATTR_NAME_MAX:
        return errno.ERANGE
    return 0


def set_xattr(state: NamespaceState, op: SetXattr) -> ErrnoResult:
    inode = state.inodes.get(op.ino)
    if inode is None:
        return ErrnoResult(errno.ENOENT)
    if op.flags & ~(XATTR_CREATE | XATTR_REPLACE):
        return ErrnoResult(errno.EINVAL)
    failure = xattr_name_error(op.name)
    if failure:
        return ErrnoResult(failure)
    if len(op.value) > XATTR_SIZE_MAX:
        return ErrnoResult(errno.E2BIG)
    failure = xattr_permission(inode, op.caller, op.name, write=True)
    if failure:
        return ErrnoResult(failure)
    xattrs = inode.xattrs or {}
    exists = op.name in xattrs
    if op.flags & XATTR_CREATE and exists:
        return ErrnoResult(errno.EEXIST)
    if op.flags & XATTR_REPLACE and not exists:
        return ErrnoResult(errno.ENODATA)
    old_size = len(op.name) + len(xattrs[op.name]) if exists else 0
    total = sum(len(key) + len(value) for key, value in xattrs.items())
    if total - old_size + len(op.name) + len(op.value) > XATTR_TOTAL_MAX:
        return ErrnoResult(errno.ENOSPC)
    state.changing(inode)
    if inode.xattrs is None:
        inode.xattrs = {}
    inode.xattrs[op.name] = op.value
    inode.ctime = state.now
    return ErrnoResult(0)


def remove_xattr(state: NamespaceState, op: RemoveXattr) -> ErrnoResult:
    inode = state.inodes.get(op.ino)
    if inode is None:
        return ErrnoResult(errno.ENOENT)
    failure = xattr_name_error(op.name) or xattr_permission(inode, op.caller, op.name, write=True)
    if failure:
        return ErrnoResult(failure)
    if not inode.xattrs or op.name not in inode.xattrs:
        return ErrnoResult(errno.ENODATA)
    state.changing(inode)
    del inode.xattrs[op.name]
    if not inode.xattrs:
        inode.xattrs = None
    inode.ctime = state.now
    return ErrnoResult(0)
