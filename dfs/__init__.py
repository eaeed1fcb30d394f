"""dfs: a distributed file system with a Multi-Paxos metadata log, consistent-hash
data servers and a FUSE mount."""

__version__ = "0.1.0"
