"""The fault suite's checkers: recorded histories, linearizability (Wing-Gong with
memoized (linearized set, model state) pairs), and the file checkers (acknowledged
writes survive byte for byte; no read mixes two versions). Pure: no I/O, no clock."""
