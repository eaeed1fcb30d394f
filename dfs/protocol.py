"""Wire-level conventions shared by servers and clients (beyond the .proto files)."""

# A replica that is not the leader answers UNAVAILABLE with the leader's
# host:port under this trailing-metadata key (empty when it knows none).
LEADER_METADATA_KEY = "dfs-leader"
