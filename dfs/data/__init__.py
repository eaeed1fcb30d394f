"""Data servers: the chunk store, checksums, repair, scrub, GC."""
