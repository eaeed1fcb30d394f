"""The namespace: a pure, deterministic state machine, and the server that serves it."""
