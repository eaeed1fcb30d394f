"""Permission rules as Linux applies them (generic_permission, sticky directories, owners).

Owns the decisions only; callers turn a refusal into the errno their syscall uses.
Root is a caller with uid 0 and every capability a local root has.
"""

from __future__ import annotations

from dfs.meta.inode import Inode
from dfs.meta.types import S_ISGID, S_ISUID, S_ISVTX, S_IXGRP, X_OK, Caller, Kind

_ANY_EXEC = 0o111


def permitted(inode: Inode, caller: Caller, mask: int) -> bool:
    """Whether caller may read (4), write (2) and/or search/execute (1) the inode."""
    if caller.is_root:
        # CAP_DAC_OVERRIDE: read and write always; execute needs some x bit on a
        # non-directory, as the kernel refuses to exec a file nobody may exec.
        return not (mask & X_OK and inode.kind != Kind.DIRECTORY and not inode.mode & _ANY_EXEC)
    mode = inode.mode
    if caller.uid == inode.uid:
        granted = (mode >> 6) & 7
    elif caller.in_group(inode.gid):
        granted = (mode >> 3) & 7
    else:
        granted = mode & 7
    return mask & ~granted == 0


def owner_or_root(inode: Inode, caller: Caller) -> bool:
    """inode_owner_or_capable: the owner, or root (CAP_FOWNER)."""
    return caller.is_root or caller.uid == inode.uid


def in_group_or_root(inode: Inode, caller: Caller, gid: int) -> bool:
    """in_group_or_capable: keeps a setgid bit (CAP_FSETID for root)."""
    return caller.is_root or caller.in_group(gid)


def sticky_forbids(parent: Inode, victim: Inode, caller: Caller) -> bool:
    """In a sticky directory only the entry's owner, the directory's owner or root
    may remove or rename the entry."""
    if not parent.mode & S_ISVTX or caller.is_root:
        return False
    return caller.uid not in (victim.uid, parent.uid)


def should_drop_sgid(inode: Inode, caller: Caller) -> bool:
    """setattr_should_drop_sgid: a setgid bit goes when it means "setgid" (the file is
    group-executable) or when the caller could not have set it."""
    if not inode.mode & S_ISGID:
        return False
    return bool(inode.mode & S_IXGRP) or not in_group_or_root(inode, caller, inode.gid)


def without_privileges(inode: Inode, caller: Caller) -> int:
    """The mode after a write or truncate: a non-root caller's change to a regular file
    drops suid, and sgid when should_drop_sgid says so (setattr_should_drop_suidgid)."""
    if caller.is_root or inode.kind != Kind.REGULAR:
        return inode.mode
    mode = inode.mode & ~S_ISUID
    if should_drop_sgid(inode, caller):
        mode &= ~S_ISGID
    return mode
