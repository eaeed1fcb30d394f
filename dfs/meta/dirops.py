"""Operations on names: mknod/mkdir/create/symlink, unlink/rmdir, rename, link.

Each checks in the order the Linux VFS does, so the first failing rule decides the
errno, and changes nothing unless every check passed.
"""

from __future__ import annotations

import errno

from dfs.meta import perms
from dfs.meta.inode import Directory, Inode, Payload
from dfs.meta.ops import Link, MakeNode, Remove, Rename
from dfs.meta.results import AttrResult, ErrnoResult
from dfs.meta.state import DOT, DOTDOT, NamespaceState, name_error
from dfs.meta.types import (
    LINK_MAX,
    PATH_MAX,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    S_ISGID,
    S_IXGRP,
    W_OK,
    X_OK,
    Caller,
    Kind,
)

_WRITE_SEARCH = W_OK | X_OK
_DIR_MODE_MASK = 0o1777  # mkdir drops suid/sgid from the requested mode; sgid may be inherited
_FILE_MODE_MASK = 0o7777
_SYMLINK_MODE = 0o777
_KINDS = frozenset(Kind)


def make_node(state: NamespaceState, op: MakeNode) -> AttrResult:
    failure, parent = state.directory(op.parent, op.caller)
    if parent is None:
        return AttrResult(failure)
    if op.name in (DOT, DOTDOT):
        return AttrResult(errno.EEXIST)
    failure = name_error(op.name)
    if failure:
        return AttrResult(failure)
    existing = state.child(parent, op.name)
    if existing is not None:
        if op.exclusive or op.kind != Kind.REGULAR:
            return AttrResult(errno.EEXIST)
        if existing.kind == Kind.DIRECTORY:
            return AttrResult(errno.EISDIR)
        return AttrResult(0, state.attr(existing))
    if parent.nlink == 0:
        return AttrResult(errno.ENOENT)
    if not perms.permitted(parent, op.caller, _WRITE_SEARCH):
        return AttrResult(errno.EACCES)
    failure = _kind_error(op)
    if failure:
        return AttrResult(failure)
    state.changing(parent)
    inode = _new_inode(state, parent, op)
    parent.directory.add(op.name, inode.ino)
    state.inodes[inode.ino] = inode
    if op.kind == Kind.DIRECTORY:
        parent.nlink += 1
    state.touch_dir(parent)
    return AttrResult(0, state.attr(inode))


def _kind_error(op: MakeNode) -> int:
    if op.kind in (Kind.CHAR_DEVICE, Kind.BLOCK_DEVICE) and not op.caller.is_root:
        return errno.EPERM  # CAP_MKNOD
    if op.kind == Kind.SYMLINK:
        if not op.target:
            return errno.ENOENT
        if len(op.target) >= PATH_MAX:
            return errno.ENAMETOOLONG
        if b"\0" in op.target:
            return errno.EINVAL
    if op.kind not in _KINDS:
        return errno.EINVAL
    return 0


def _new_inode(state: NamespaceState, parent: Inode, op: MakeNode) -> Inode:
    kind = Kind(op.kind)
    caller = op.caller
    gid = caller.gid
    if kind == Kind.DIRECTORY:
        mode = op.mode & _DIR_MODE_MASK
    elif kind == Kind.SYMLINK:
        mode = _SYMLINK_MODE
    else:
        mode = op.mode & _FILE_MODE_MASK
    if parent.mode & S_ISGID:
        gid = parent.gid
        if kind == Kind.DIRECTORY:
            mode |= S_ISGID
        elif mode & S_ISGID and mode & S_IXGRP and not perms.in_group_or_root(parent, caller, gid):
            mode &= ~S_ISGID
    ino = state.allocate_ino()
    payload: Payload = None
    nlink = 1
    if kind == Kind.DIRECTORY:
        payload = Directory(parent.ino)
        nlink = 2
    elif kind == Kind.SYMLINK:
        payload = op.target
    elif kind in (Kind.CHAR_DEVICE, Kind.BLOCK_DEVICE):
        payload = op.rdev
    return Inode(ino, kind, mode, caller.uid, gid, nlink, state.now, payload)


def _may_delete(parent: Inode, victim: Inode, caller: Caller, is_dir: bool) -> int:
    """may_delete() of the VFS: write+search on the parent, sticky rule, kind match."""
    if not perms.permitted(parent, caller, _WRITE_SEARCH):
        return errno.EACCES
    if perms.sticky_forbids(parent, victim, caller):
        return errno.EPERM
    if is_dir and victim.kind != Kind.DIRECTORY:
        return errno.ENOTDIR
    if not is_dir and victim.kind == Kind.DIRECTORY:
        return errno.EISDIR
    return 0


def remove(state: NamespaceState, op: Remove) -> ErrnoResult:
    failure, parent = state.directory(op.parent, op.caller)
    if parent is None:
        return ErrnoResult(failure)
    if op.name in (DOT, DOTDOT):
        if not op.directory:
            return ErrnoResult(errno.EISDIR)
        return ErrnoResult(errno.EINVAL if op.name == DOT else errno.ENOTEMPTY)
    failure = name_error(op.name)
    if failure:
        return ErrnoResult(failure)
    victim = state.child(parent, op.name)
    if victim is None:
        return ErrnoResult(errno.ENOENT)
    failure = _may_delete(parent, victim, op.caller, op.directory)
    if failure:
        return ErrnoResult(failure)
    if op.directory and len(victim.directory):
        return ErrnoResult(errno.ENOTEMPTY)
    state.changing(parent, victim)
    parent.directory.remove(op.name)
    if victim.kind == Kind.DIRECTORY:
        parent.nlink -= 1
    state.drop_link(victim)
    state.touch_dir(parent)
    return ErrnoResult(0)


def link(state: NamespaceState, op: Link) -> AttrResult:
    inode = state.inodes.get(op.ino)
    if inode is None:
        return AttrResult(errno.ENOENT)
    failure, parent = state.directory(op.new_parent, op.caller)
    if parent is None:
        return AttrResult(failure)
    if op.new_name in (DOT, DOTDOT):
        return AttrResult(errno.EEXIST)
    failure = name_error(op.new_name)
    if failure:
        return AttrResult(failure)
    if parent.directory.get(op.new_name) is not None:
        return AttrResult(errno.EEXIST)
    if parent.nlink == 0:
        return AttrResult(errno.ENOENT)
    if not perms.permitted(parent, op.caller, _WRITE_SEARCH):
        return AttrResult(errno.EACCES)
    if inode.kind == Kind.DIRECTORY:
        return AttrResult(errno.EPERM)
    if inode.nlink == 0:
        return AttrResult(errno.ENOENT)
    if inode.nlink >= LINK_MAX:
        return AttrResult(errno.EMLINK)
    state.changing(parent, inode)
    parent.directory.add(op.new_name, inode.ino)
    inode.nlink += 1
    inode.ctime = state.now
    state.touch_dir(parent)
    return AttrResult(0, state.attr(inode))


def _is_ancestor(state: NamespaceState, ancestor: int, ino: int) -> bool:
    """Whether directory `ancestor` is `ino` or lies on its path to the root."""
    while True:
        if ino == ancestor:
            return True
        parent = state.inodes[ino].directory.parent
        if parent == ino:
            return False
        ino = parent


def rename(state: NamespaceState, op: Rename) -> ErrnoResult:
    flags = op.flags
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == (
        RENAME_NOREPLACE | RENAME_EXCHANGE
    ):
        return ErrnoResult(errno.EINVAL)
    failure, old_dir = state.directory(op.parent, op.caller)
    if old_dir is None:
        return ErrnoResult(failure)
    failure, new_dir = state.directory(op.new_parent, op.caller)
    if new_dir is None:
        return ErrnoResult(failure)
    if op.name in (DOT, DOTDOT) or op.new_name in (DOT, DOTDOT):
        return ErrnoResult(errno.EBUSY)
    failure = name_error(op.name) or name_error(op.new_name)
    if failure:
        return ErrnoResult(failure)
    source = state.child(old_dir, op.name)
    if source is None:
        return ErrnoResult(errno.ENOENT)
    target = state.child(new_dir, op.new_name)
    exchange = bool(flags & RENAME_EXCHANGE)
    if flags & RENAME_NOREPLACE and target is not None:
        return ErrnoResult(errno.EEXIST)
    if exchange and target is None:
        return ErrnoResult(errno.ENOENT)
    failure = _rename_checks(state, op, old_dir, new_dir, source, target)
    if failure:
        return ErrnoResult(failure)
    if target is source:
        return ErrnoResult(0)  # two names of one inode: rename(2) does nothing
    state.changing(old_dir, new_dir, source, *([] if target is None else [target]))
    if exchange:
        assert target is not None
        _exchange(state, op, old_dir, new_dir, source, target)
    else:
        _move(state, op, old_dir, new_dir, source, target)
    return ErrnoResult(0)


def _rename_checks(
    state: NamespaceState,
    op: Rename,
    old_dir: Inode,
    new_dir: Inode,
    source: Inode,
    target: Inode | None,
) -> int:
    exchange = bool(op.flags & RENAME_EXCHANGE)
    is_dir = source.kind == Kind.DIRECTORY
    new_is_dir = target is not None and target.kind == Kind.DIRECTORY
    if old_dir is not new_dir:
        # A directory may not move into its own subtree; the target may not be an
        # ancestor of the source either (it would be a non-empty directory).
        if is_dir and _is_ancestor(state, source.ino, new_dir.ino):
            return errno.EINVAL
        if new_is_dir and target is not None and _is_ancestor(state, target.ino, old_dir.ino):
            return errno.EINVAL if exchange else errno.ENOTEMPTY
    if target is source:
        return 0
    caller = op.caller
    failure = _may_delete(old_dir, source, caller, is_dir)
    if failure:
        return failure
    if target is None:
        if new_dir.nlink == 0:
            return errno.ENOENT
        if not perms.permitted(new_dir, caller, _WRITE_SEARCH):
            return errno.EACCES
    else:
        failure = _may_delete(new_dir, target, caller, new_is_dir if exchange else is_dir)
        if failure:
            return failure
    if old_dir is not new_dir:
        # Moving a directory rewrites its '..', which needs write permission on it.
        if is_dir and not perms.permitted(source, caller, W_OK):
            return errno.EACCES
        if (
            exchange
            and new_is_dir
            and target is not None
            and not perms.permitted(target, caller, W_OK)
        ):
            return errno.EACCES
        if is_dir and not new_is_dir and new_dir.nlink >= LINK_MAX:
            return errno.EMLINK
    if not exchange and new_is_dir and target is not None and len(target.directory):
        return errno.ENOTEMPTY
    return 0


def _move(
    state: NamespaceState,
    op: Rename,
    old_dir: Inode,
    new_dir: Inode,
    source: Inode,
    target: Inode | None,
) -> None:
    if target is not None:
        new_dir.directory.remove(op.new_name)
        if target.kind == Kind.DIRECTORY:
            new_dir.nlink -= 1
        state.drop_link(target)
    old_dir.directory.remove(op.name)
    new_dir.directory.add(op.new_name, source.ino)
    if source.kind == Kind.DIRECTORY and old_dir is not new_dir:
        old_dir.nlink -= 1
        new_dir.nlink += 1
        source.directory.parent = new_dir.ino
    source.ctime = state.now
    state.touch_dir(old_dir)
    state.touch_dir(new_dir)


def _exchange(
    state: NamespaceState,
    op: Rename,
    old_dir: Inode,
    new_dir: Inode,
    source: Inode,
    target: Inode,
) -> None:
    old_dir.directory.remove(op.name)
    new_dir.directory.remove(op.new_name)
    old_dir.directory.add(op.name, target.ino)
    new_dir.directory.add(op.new_name, source.ino)
    if old_dir is not new_dir:
        for moved, gone_from, went_to in ((source, old_dir, new_dir), (target, new_dir, old_dir)):
            if moved.kind == Kind.DIRECTORY:
                gone_from.nlink -= 1
                went_to.nlink += 1
                moved.directory.parent = went_to.ino
    source.ctime = target.ctime = state.now
    state.touch_dir(old_dir)
    state.touch_dir(new_dir)
