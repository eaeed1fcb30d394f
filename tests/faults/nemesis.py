"""The nemesis: one fault at a time, each followed by its heal.

kill -9 and restart of a metadata server (a minority: one of three, only while the
others run) or of one data server (min_replicas - 1); the same with a power loss
(its disk drops what it did not fsync), and a power outage of every server at once;
a data disk that fills up for a while; SIGSTOP/SIGCONT of the
leader (the classic stale leader); partitions between metadata servers (leader
isolated, majority/minority, one-way); a lossy link; the leader's replies to the
clients dropped (answers lost after the commit, so retries must be deduplicated);
leadership transfer under load. After a kill -9 of the leader it times the first
metadata operation a client completes (failover).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dfs.auth import ClusterSecret, sync_channel
from dfs.rpc import admin_pb2, admin_pb2_grpc
from tests.faults.cluster import NsCluster
from tests.faults.netns import CLIENT, NFT_TABLE, nft, nft_batch
from tests.support.procs import ServerProcess

log = logging.getLogger(__name__)


@dataclass
class NemesisLog:
    faults: Counter[str] = field(default_factory=Counter)
    failovers_s: list[float] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


class Nemesis:
    def __init__(self, cluster: NsCluster, rng: random.Random, hold_s: tuple[float, float],
                 kinds: list[str] | None = None) -> None:
        self.cluster = cluster
        self.rng = rng
        self.hold_s = hold_s
        self.kinds = kinds or list(FAULTS)
        self.log = NemesisLog()
        self._probe = 0
        self._health: dict[str, health_pb2_grpc.HealthStub] = {}
        self._admin: dict[int, admin_pb2_grpc.AdminStub] = {}
        self._channels: list[grpc.Channel] = []
        self._started = time.monotonic()

    def _channel(self, addr: str, secret: ClusterSecret | None) -> grpc.Channel:
        channel = sync_channel(addr, secret)
        self._channels.append(channel)
        return channel

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def note(self, text: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {time.monotonic() - self._started:8.2f} {text}"
        self.log.events.append(line)
        with (self.cluster.base / "nemesis.log").open("a") as events:
            events.write(line + "\n")  # on disk as it happens: a hung run still tells
        log.info("nemesis: %s", text)

    def hold(self) -> None:
        time.sleep(self.rng.uniform(*self.hold_s))

    def meta_ids(self) -> list[int]:
        return sorted(self.cluster.meta.addrs)

    def all_meta_serving(self) -> bool:
        return self._all_serving(self.cluster.meta.replicas.values())

    def all_data_serving(self) -> bool:
        return self._all_serving(self.cluster.data.servers.values())

    def _all_serving(self, procs: Iterable[ServerProcess]) -> bool:
        """Alive and SERVING, asked over one kept channel per server (a new channel
        per check costs more than the check)."""
        for proc in procs:
            if not proc.alive():
                return False
            addr = proc.addr or ""
            if addr not in self._health:
                self._health[addr] = health_pb2_grpc.HealthStub(self._channel(addr, None))
            try:
                reply = self._health[addr].Check(health_pb2.HealthCheckRequest(), timeout=2.0)
            except grpc.RpcError:
                return False
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                return False
        return True

    def leader(self, timeout_s: float = 30) -> int:
        """The replica leading the highest ballot any replica knows (a deposed leader
        that has not heard of its successor yet still says it leads)."""
        meta = self.cluster.meta
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ballots: dict[int, tuple[int, int]] = {}
            leaders = []
            for node_id in sorted(meta.addrs):
                if not meta.replicas[node_id].alive():
                    continue
                if node_id not in self._admin:
                    self._admin[node_id] = admin_pb2_grpc.AdminStub(
                        self._channel(meta.addrs[node_id], meta.secret))
                try:
                    status = self._admin[node_id].Status(admin_pb2.StatusRequest(), timeout=2.0)
                except grpc.RpcError:
                    continue
                ballots[node_id] = (status.meta.ballot_round, status.meta.ballot_node)
                if status.meta.role == "leader":
                    leaders.append(node_id)
            newest = max(ballots.values(), default=None)
            for node_id in leaders:
                if ballots[node_id] == newest:
                    return node_id
            time.sleep(0.05)
        raise TimeoutError("no metadata leader")

    def one_fault(self, prefer: Collection[str] = ()) -> str:
        """Inject and heal one fault of a kind that is safe now (one of `prefer` if
        any is): a restarted server is not waited for, but nothing more is taken from
        its group until it serves (at most one metadata server and one data server
        down at a time)."""
        meta_ok, data_ok = self.all_meta_serving(), self.all_data_serving()
        allowed = [k for k in self.kinds
                   if (meta_ok or k not in NEEDS_ALL_META)
                   and (data_ok or k not in NEEDS_ALL_DATA)]
        if not allowed:
            self.wait_meta_serving()
            return self.one_fault(prefer)
        kind = self.rng.choice([k for k in allowed if k in prefer] or allowed)
        FAULTS[kind](self)
        self.log.faults[kind] += 1
        return kind

    def wait_meta_serving(self, timeout_s: float = 60) -> None:
        self.wait_serving(self.all_meta_serving, "metadata servers", timeout_s)

    def wait_serving(self, serving: Callable[[], bool], what: str,
                     timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not serving():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not all serving after a heal")
            time.sleep(0.1)

    # -- faults ---------------------------------------------------------------------

    def kill_meta_leader(self) -> None:
        leader = self.leader()
        self.note(f"kill -9 meta{leader} (leader)")
        killed_at = time.monotonic()
        self.cluster.meta.kill(leader)
        self.log.failovers_s.append(self.first_metadata_op_after(killed_at))
        self.hold()
        self.cluster.restart_meta(leader)

    def kill_meta_follower(self) -> None:
        leader = self.leader()
        follower = self.rng.choice([i for i in self.meta_ids() if i != leader])
        self.note(f"kill -9 meta{follower}")
        self.cluster.meta.kill(follower)
        self.hold()
        self.cluster.restart_meta(follower)

    def kill_data(self) -> None:
        server = self.rng.choice(sorted(self.cluster.data.addrs))
        self.note(f"kill -9 data{server}")
        self.cluster.data.kill(server)
        self.hold()
        self.cluster.restart_data(server)

    def power_loss_data(self) -> None:
        server = self.rng.choice(sorted(self.cluster.data.addrs))
        self.note(f"power loss data{server}")
        self.cluster.data.kill(server)
        self.note(f"data{server} disk lost {self.cluster.disks[f'data{server}'].power_loss()}")
        self.hold()
        self.cluster.restart_data(server)

    def power_loss_meta(self) -> None:
        node_id = self.rng.choice(self.meta_ids())
        self.note(f"power loss meta{node_id}")
        self.cluster.meta.kill(node_id)
        self.note(f"meta{node_id} disk lost {self.cluster.disks[f'meta{node_id}'].power_loss()}")
        self.hold()
        self.cluster.restart_meta(node_id)

    def power_outage(self) -> None:
        """Every server loses power at once, then all come back: only what each one
        fsynced survives, so an acknowledgement given before an fsync loses data."""
        self.note("power outage: every server")
        procs = [*self.cluster.meta.replicas.values(), *self.cluster.data.servers.values()]
        for proc in procs:
            proc.signal(signal.SIGKILL)
        for proc in procs:
            proc.popen.wait(timeout=30)
        for name, disk in self.cluster.disks.items():
            self.note(f"{name} disk lost {disk.power_loss()}")
        self.hold()
        for node_id in self.meta_ids():
            self.cluster.restart_meta(node_id)
        for server_id in sorted(self.cluster.data.addrs):
            self.cluster.restart_data(server_id)

    def data_disk_full(self) -> None:
        """Writes to one data server's disk fail with ENOSPC for a while."""
        server = self.rng.choice(sorted(self.cluster.data.addrs))
        self.note(f"data{server} disk full")
        disk = self.cluster.disks[f"data{server}"]
        disk.set_full(True)
        self.hold()
        disk.set_full(False)

    def pause_meta_leader(self) -> None:
        leader = self.leader()
        self.note(f"SIGSTOP meta{leader} (leader)")
        self.cluster.meta.pause(leader)
        self.hold()
        self.cluster.meta.resume(leader)

    def isolate_meta_leader(self) -> None:
        """The leader keeps its clients but loses its peers: a majority elects anew."""
        leader = self.leader()
        others = [f"meta{i}" for i in self.meta_ids() if i != leader]
        self.note(f"partition meta{leader} (leader) | {others}")
        self.cluster.network.partition([f"meta{leader}"], others)
        self.hold()
        self.cluster.network.heal()

    def partition_minority(self) -> None:
        ids = self.meta_ids()
        alone = self.rng.choice(ids)
        others = [f"meta{i}" for i in ids if i != alone]
        self.note(f"partition meta{alone} | {others}")
        self.cluster.network.partition([f"meta{alone}"], others)
        self.hold()
        self.cluster.network.heal()

    def one_way_from_leader(self) -> None:
        """The leader's messages to its peers are lost; theirs still reach it."""
        leader = self.leader()
        self.note(f"one-way: meta{leader} (leader) -> peers dropped")
        for other in self.meta_ids():
            if other != leader:
                self.cluster.network.drop([f"meta{leader}"], f"meta{other}")
        self.hold()
        self.cluster.network.heal()

    def lossy_link(self) -> None:
        host = self.rng.choice([*(f"meta{i}" for i in self.meta_ids()),
                                *(f"data{i}" for i in sorted(self.cluster.data.addrs))])
        percent = self.rng.choice([10, 25, 40])
        self.note(f"lossy: {host} loses {percent}% of what it receives")
        self.cluster.network.lossy(host, percent)
        self.hold()
        self.cluster.network.heal()

    def replies_lost(self) -> None:
        """The leader commits but its answers to clients are dropped: the clients
        retry elsewhere and later here; exactly-once sessions must answer, not apply."""
        leader = self.leader()
        network = self.cluster.network
        namespace = network.namespaces[f"meta{leader}"]
        self.note(f"meta{leader} (leader) -> clients dropped")
        nft_batch(namespace, [
            f"add chain inet {NFT_TABLE} output "
            "{ type filter hook output priority 0; policy accept; }",
            f"add rule inet {NFT_TABLE} output ip daddr {network.addrs[CLIENT]} drop",
        ])
        self.hold()
        nft(namespace, "delete", "chain", "inet", NFT_TABLE, "output")

    def transfer_leader(self) -> None:
        leader = self.leader()
        target = self.rng.choice([i for i in self.meta_ids() if i != leader])
        self.note(f"transfer leadership meta{leader} -> meta{target}")
        try:
            reply = self._admin[leader].MetaTransferLeader(
                admin_pb2.TransferLeaderRequest(id=target), timeout=5)
            if not reply.ok:
                self.note(f"transfer refused: {reply.message}")
        except grpc.RpcError as err:
            self.note(f"transfer failed: {err.code()}")
        self.hold()

    # -- failover timing ------------------------------------------------------------

    def first_metadata_op_after(self, killed_at: float) -> float:
        """Seconds from the kill to the first mkdir the mount completes. The mkdir
        runs in a thread of its own: a mount that never answers fails the run with a
        message instead of hanging the nemesis in a system call."""
        self._probe += 1
        probe = self.cluster.mnt / "failover" / f"p{os.getpid()}-{self._probe}"
        done: list[float] = []

        def attempts() -> None:
            while time.monotonic() < killed_at + FAILOVER_LIMIT_S:
                try:
                    os.makedirs(probe)
                except FileExistsError:
                    pass  # a retry that had already applied
                except OSError:
                    time.sleep(0.01)
                    continue
                done.append(time.monotonic() - killed_at)
                return

        worker = threading.Thread(target=attempts, daemon=True, name="failover-probe")
        worker.start()
        worker.join(timeout=FAILOVER_LIMIT_S + 5)
        if not done:
            self.note("failover: no metadata operation completed")
            raise TimeoutError(f"no metadata operation completed at the mount within "
                               f"{FAILOVER_LIMIT_S:.0f} s of the leader kill (hung or failing)")
        self.note(f"failover: first metadata op after {done[0]:.3f} s")
        return done[0]

    def heal_all(self) -> None:
        """Everything back: rules flushed, processes resumed and running."""
        self.cluster.network.heal()
        for name, disk in self.cluster.disks.items():
            if name.startswith("data"):
                disk.set_full(False)
        for node_id, proc in self.cluster.meta.replicas.items():
            proc.signal(signal.SIGCONT)
            if not proc.alive():
                self.cluster.restart_meta(node_id)
        for server_id, proc in self.cluster.data.servers.items():
            if not proc.alive():
                self.cluster.restart_data(server_id)
        self.wait_meta_serving()
        # The final reads need the data servers too: after a power outage every copy
        # of a chunk may be on a server still starting.
        self.wait_serving(self.all_data_serving, "data servers", timeout_s=120)


# These take or cut off a metadata server: only while all three serve (a minority).
NEEDS_ALL_META = frozenset({"kill-meta-leader", "kill-meta-follower", "pause-meta-leader",
                            "isolate-meta-leader", "partition-minority",
                            "one-way-from-leader", "replies-lost", "transfer-leader",
                            "power-loss-meta", "power-outage"})
# These take a data server: only while all serve (min_replicas - 1 = 1 at a time).
NEEDS_ALL_DATA = frozenset({"kill-data", "power-loss-data", "power-outage"})
# Every run that may inject these does so at least once (in its second half, once
# there is history to lose): the whole-cluster power cut is what catches an
# acknowledgement given before an fsync.
AT_LEAST_ONCE = ("power-outage",)

FAILOVER_LIMIT_S = 60.0

FAULTS = {
    "kill-meta-leader": Nemesis.kill_meta_leader,
    "kill-meta-follower": Nemesis.kill_meta_follower,
    "kill-data": Nemesis.kill_data,
    "pause-meta-leader": Nemesis.pause_meta_leader,
    "isolate-meta-leader": Nemesis.isolate_meta_leader,
    "partition-minority": Nemesis.partition_minority,
    "one-way-from-leader": Nemesis.one_way_from_leader,
    "lossy-link": Nemesis.lossy_link,
    "replies-lost": Nemesis.replies_lost,
    "transfer-leader": Nemesis.transfer_leader,
    "power-loss-data": Nemesis.power_loss_data,
    "power-loss-meta": Nemesis.power_loss_meta,
    "power-outage": Nemesis.power_outage,
    "data-disk-full": Nemesis.data_disk_full,
}
