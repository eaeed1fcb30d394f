"""Collectors that read a server's own counters when Prometheus scrapes.

Nothing here runs on a hot path: the Paxos node and the chunk store keep
plain integers; these turn them into metric families on demand.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from dfs.client.chunkcache import ChunkCache
    from dfs.data.antientropy import AntiEntropy
    from dfs.data.repair import Upkeep
    from dfs.data.scrub import Scrubber
    from dfs.data.store import ChunkStore
    from dfs.paxos.node import PaxosNode


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class PaxosCollector(Collector):
    """Ballots, slots, WAL and snapshot figures of one metadata replica.

    Batch size is rate(dfs_paxos_commands_applied_total) /
    rate(dfs_paxos_applied_slot): commands per log entry.
    """

    def __init__(self, node: PaxosNode) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        status = node.status()
        yield _gauge("dfs_paxos_ballot_round", "Highest promised ballot round", status.ballot.round)
        yield _gauge("dfs_paxos_is_leader", "1 on the replica that leads",
                     float(node.core.is_leader))
        yield _gauge("dfs_paxos_leader_id", "Replica this one believes leads (0: none)",
                     status.leader_id or 0)
        yield _gauge("dfs_paxos_chosen_slot", "Highest slot known chosen", status.chosen_upto)
        yield _gauge("dfs_paxos_applied_slot", "Highest slot applied to the state machine",
                     node.applied_upto)
        yield _gauge("dfs_paxos_snapshot_slot", "Slot of the latest snapshot", node.snapshot_slot)
        yield _gauge("dfs_paxos_lease_seconds", "Lease-read validity left", status.lease_left)
        yield _gauge("dfs_paxos_voters", "Voters in the current configuration",
                     len(status.config.voters))
        yield _counter("dfs_paxos_commands_applied", "Commands applied", node.commands_applied)
        yield _counter("dfs_paxos_elections", "Elections this replica started",
                       node.core.elections_started)
        yield _counter("dfs_paxos_wal_fsyncs", "fsyncs of the write-ahead log",
                       node.wal.fsync_count)
        yield _gauge("dfs_paxos_wal_bytes", "Bytes of WAL on disk", node.wal.size_bytes())


class DataServerCollector(Collector):
    """Chunks and bytes held by one data server, and its background work: repair
    (anti-entropy pushes and drops), scrub progress and bad copies."""

    def __init__(self, store: ChunkStore, capacity: int, scrubber: Scrubber,
                 anti_entropy: AntiEntropy, upkeep: Upkeep) -> None:
        self.store = store
        self.capacity = capacity
        self.scrubber = scrubber
        self.anti_entropy = anti_entropy
        self.upkeep = upkeep

    def collect(self) -> Iterator[Metric]:
        yield _gauge("dfs_data_chunks", "Chunks held", self.store.chunk_count)
        yield _gauge("dfs_data_used_bytes", "Bytes of chunk files held", self.store.used_bytes)
        yield _gauge("dfs_data_capacity_bytes", "Bytes this server may fill (0: its disk)",
                     self.capacity)
        passed = self.anti_entropy.last
        yield _gauge("dfs_data_under_replicated_chunks",
                     "Live chunks with fewer than R copies in the last pass",
                     passed.under_replicated)
        yield _gauge("dfs_data_misplaced_copies", "Copies held that no home needs, to drop",
                     passed.misplaced)
        yield _counter("dfs_data_repair_pushed_bytes", "Bytes pushed to other servers by repair "
                       "and rebalance", self.anti_entropy.pushed_bytes)
        yield _counter("dfs_data_repair_dropped_copies", "Copies dropped once every home held "
                       "one", self.anti_entropy.dropped)
        yield _gauge("dfs_data_unrepaired_copies",
                     "Bad copies found and not yet replaced", self.upkeep.unrepaired)
        yield _counter("dfs_data_repaired_copies", "Bad copies replaced from a good one",
                       self.upkeep.repaired)
        scrub = self.scrubber.progress()
        yield _counter("dfs_data_scrub_passes", "Full scrub passes completed", scrub.passes)
        yield _gauge("dfs_data_scrub_pass_bytes", "Bytes verified in the current (or last) "
                     "scrub pass", scrub.bytes_checked)
        yield _counter("dfs_data_scrub_bad_copies", "Bad copies scrub found", scrub.bad_found)


class ClientCacheCollector(Collector):
    """The mount's chunk cache: bytes served from it and bytes fetched."""

    def __init__(self, cache: ChunkCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("dfs_client_cache_bytes",
                                     "Bytes read through the chunk cache, by hit or miss",
                                     labels=["result"])
        family.add_metric(["hit"], self.cache.hits)
        family.add_metric(["miss"], self.cache.misses)
        yield family
