"""Multi-Paxos for the metadata servers: a pure core (no I/O) and the driver that
gives it a disk, a network and a clock."""
