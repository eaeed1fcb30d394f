"""The client library every dfs client uses: leader discovery, retries, sessions, chunk I/O."""
