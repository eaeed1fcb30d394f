"""The simulator's checks: incremental ones at every apply, whole-run ones at the end.

At every step: one value per slot across replicas, identical results per (slot,
index) across replicas (so identical applied prefixes), no new leader while another
still holds a lease. At the end: every client
finished after the heal (liveness), every acknowledged write was applied, replicas
at the same slot hold the same state, and the history is linearizable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfs.faults.linearizable import check_history
from dfs.paxos.config import Config
from tests.sim.cluster import SimFailure

if TYPE_CHECKING:
    from tests.sim.simulation import Simulation


class Invariants:
    def __init__(self) -> None:
        self.chosen: dict[int, tuple[tuple[bytes, ...], Config | None]] = {}
        self.results: dict[tuple[int, int], bytes] = {}

    def on_chosen(
        self, node: int, slot: int, commands: tuple[bytes, ...], config: Config | None
    ) -> None:
        value = (commands, config)
        first = self.chosen.setdefault(slot, value)
        if first != value:
            raise SimFailure(
                f"two values chosen for slot {slot}: node {node} has {value!r}, "
                f"another replica had {first!r}"
            )

    def on_result(self, node: int, slot: int, index: int, result: bytes) -> None:
        first = self.results.setdefault((slot, index), result)
        if first != result:
            raise SimFailure(
                f"slot {slot}.{index} gave {result!r} on node {node} but {first!r} elsewhere"
            )

    def on_new_leader(self, sim: Simulation, node_id: int) -> None:
        """Leases never overlap: when a replica completes phase 1, no other replica may
        still be entitled to serve lease reads (the point of lease rules 1-3 and 6)."""
        for other in sim.nodes.values():
            core = other.core
            if other.id == node_id or not other.alive or core is None or not core.is_leader:
                continue
            if core.status(other.now()).lease_left > 0:
                raise SimFailure(
                    f"node {node_id} became leader while node {other.id} still holds a "
                    f"lease ({core.status(other.now()).lease_left * 1000:.1f}ms left)"
                )

    def final(self, sim: Simulation) -> None:
        stuck = [c.id for c in sim.clients if not c.finished]
        if stuck:
            raise SimFailure(f"clients {stuck} did not finish after the heal (no progress)")
        for op in sim.history_ops():
            if op.kind in ("put", "cas") and op.response != float("inf"):
                assert op.value is not None
                if op.value not in sim.applied_values:
                    raise SimFailure(f"acknowledged write {op.value!r} was never applied")
        by_slot: dict[int, tuple[int, bytes]] = {}
        for node in sim.nodes.values():
            if node.alive and node.machine is not None:
                state = node.machine.snapshot()
                first = by_slot.setdefault(node.applied, (node.id, state))
                if first[1] != state:
                    raise SimFailure(
                        f"nodes {first[0]} and {node.id} differ at slot {node.applied}"
                    )
        key = check_history(sim.history_ops())
        if key is not None:
            raise SimFailure(f"history of key {key!r} is not linearizable")
