"""Consistent-hash placement of chunks on data servers (pure)."""
