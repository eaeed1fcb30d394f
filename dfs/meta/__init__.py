"""The namespace: a pure, deterministic state machine, and the server that serves it.

Pure (no I/O, clock or randomness; time arrives in ApplyContext):
    statemachine  NamespaceMachine: StateMachine for the log + typed execute/query
    ops, results  the operations (commands through the log, read-only queries) and answers
    codec         deterministic bytes for commands, queries and results
    state, inode  the replicated data: inodes, directories with stable cookies, counters
    dirops        mknod/mkdir/create/symlink, unlink/rmdir, rename, link
    attrops       setattr (chmod, chown, truncate, utimens) and xattrs
    fileops       block-map commits, compaction, truncation, orphans, GC acks
    queries       lookup, getattr, readdir, readlink, xattrs, statfs, access, open, maps
    perms         Linux permission rules; blocks: slice arithmetic; chunks: refs, ranges
    ringdata      the ring as data; snapshot: the versioned snapshot format
"""
