"""The FUSE mount: pyfuse3 operations that translate to dfs/client calls, and the
mount process. Policy (buffering, caching) lives in dfs/client, never here."""
