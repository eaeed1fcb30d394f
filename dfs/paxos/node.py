"""The driver of one metadata replica: gives the pure core a disk, a network and a clock.

Owns the event loop side of Multi-Paxos: feeding the core messages, ticks and
proposals; persisting its records in the WAL before anything that depends on
them is sent (the core withholds those messages until `durable`); applying
chosen entries to the state machine in slot order; answering proposers and
readers. It never decides protocol questions: those are the core's.

Every proposed command is wrapped in an envelope (origin replica, proposal id)
so the proposer can match the applied result to the waiting caller; the state
machine sees only the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import struct
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import xxhash

from dfs.auth import ClusterSecret, aio_channel
from dfs.datadir import write_atomically
from dfs.paxos import snapshot as snapshot_files
from dfs.paxos.config import Config, decode_config, encode_config
from dfs.paxos.core import Options, PaxosCore, Ready, Role, Status
from dfs.paxos.machine import ApplyContext
from dfs.paxos.messages import LogEntry, Outgoing, Prepare, Promise
from dfs.paxos.records import Record, SnapshotRecord, decode_record, encode_record, recover
from dfs.paxos.snapshot_stream import (
    PartFile,
    Piece,
    PieceReader,
    PieceRejected,
    SnapshotIdentity,
    identify,
)
from dfs.paxos.transport import PaxosService, PeerTransport
from dfs.paxos.wal import Wal
from dfs.paxos.wire import (
    config_to_pb,
    message_from_pb,
    message_to_pb,
    prepare_from_pb,
    prepare_to_pb,
    promise_from_pb,
)
from dfs.paxos.wire import promise_to_pb as promise_pb
from dfs.rpc import admin_pb2, admin_pb2_grpc, paxos_pb2, paxos_pb2_grpc

log = logging.getLogger(__name__)

ENVELOPE = struct.Struct(">IQ")  # origin replica id, proposal id
BOOTSTRAP_FILE = "bootstrap.conf"
WAL_DIR = "wal"
SNAPSHOT_DIR = "snapshots"
MIN_SNAPSHOT_PIECE = 4096
SNAPSHOT_TIMEOUT_S = 120.0  # a transfer's deadline: this, plus its bytes at the send rate
SNAPSHOT_RATE_FLOOR = 1 << 20  # bytes/s assumed for that deadline when the rate is free


class LogMachine(Protocol):
    """What the driver applies chosen commands to."""

    def apply(self, command: bytes, ctx: ApplyContext) -> bytes: ...

    def tick_command(self, time_ns: int, leader_round: int, leader_node: int) -> bytes:
        """The leader's periodic tick (drives session expiry in state time)."""
        ...

    def begin_snapshot(self) -> None: ...

    def snapshot_step(self, max_inodes: int) -> bool: ...

    def finish_snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


class NotLeader(Exception):
    """This replica cannot serve the request; `leader_addr` may name one that can."""

    def __init__(self, leader_addr: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader_addr or 'unknown'})")
        self.leader_addr = leader_addr


class BootstrapError(Exception):
    """The data dir has no configuration and none was given."""


@dataclass(frozen=True)
class NodeOptions:
    tick_interval_s: float = 0.01
    # Randomized per election; must exceed the lease (see Options.lease_duration).
    election_timeout_s: tuple[float, float] = (0.3, 0.6)
    session_tick_interval_s: float = 1.0
    snapshot_every: int = 10_000  # chosen slots between snapshots
    snapshot_step_inodes: int = 2_000  # encoded per step, between commands
    wal_segment_bytes: int = 64 * 1024 * 1024
    snapshot_piece_bytes: int = 1 << 20  # per message of a snapshot transfer
    # Caps a snapshot transfer's bandwidth (0: no cap), leaving room for the log.
    snapshot_send_bytes_per_s: int = 0
    prepare_timeout_s: float = 0.5
    core: Options = field(
        default_factory=lambda: Options(
            heartbeat_interval=0.05,
            lease_duration=0.2,
            lease_drift_margin=0.02,
            window=64,
            max_batch=512,
        )
    )


def settle_heap() -> None:
    """Move every object alive now (the restored or snapshotted state, millions of
    them at scale) out of the cyclic collector's reach: its full passes otherwise
    walk the whole namespace, pausing the event loop for seconds. State objects are
    still freed by reference counting when a command drops them."""
    gc.collect()
    gc.freeze()


def _newest_snapshot_path(directory: Path) -> Path | None:
    paths = sorted(directory.glob("*" + snapshot_files.SUFFIX))
    return paths[-1] if paths else None


def load_bootstrap(data_dir: Path, given: Config | None) -> Config:
    """The initial configuration: recorded on first start, ignored afterwards."""
    path = data_dir / BOOTSTRAP_FILE
    if path.exists():
        config, _ = decode_config(path.read_bytes())
        if given is not None and given != config:
            log.warning("--peers ignored: this data dir was bootstrapped already")
        return config
    if given is None:
        raise BootstrapError(
            f"data dir {data_dir} holds no configuration: give --peers (new cluster) "
            f"or --join (new member)"
        )
    write_atomically(path, encode_config(given))
    return given


class PaxosNode:
    """One replica: core + WAL + transport + the state machine it drives."""

    def __init__(
        self,
        node_id: int,
        data_dir: Path,
        machine: LogMachine,
        secret: ClusterSecret | None,
        bootstrap: Config,
        options: NodeOptions = NodeOptions(),
    ) -> None:
        self.node_id = node_id
        self.data_dir = data_dir
        self.machine = machine
        self.options = options
        self.bootstrap = bootstrap
        self.transport = PeerTransport(node_id, secret)
        self.service = PaxosService(
            self._on_stream_message,
            self._on_prepare,
            self._on_install_snapshot,
            self._on_join,
            self._on_offer_snapshot,
        )
        self.cluster_id = ""  # set by the server; a joiner must name the same cluster
        self.snapshot_slot = 0
        self._snapshotting = False
        self._sending_snapshot: set[int] = set()
        self._installing = asyncio.Lock()  # one incoming snapshot transfer at a time
        self.applied_upto = 0
        self.commands_applied = 0
        self._rng = random.Random()
        self._dirty = asyncio.Event()
        self._queued: list[bytes] = []
        self._next_proposal = 1
        self._proposals: dict[int, asyncio.Future[bytes]] = {}
        self._next_read = 1
        self._reads: dict[int, asyncio.Future[None]] = {}
        self._reads_by_index: dict[int, list[asyncio.Future[None]]] = defaultdict(list)
        self._promise_waiters: dict[int, list[asyncio.Future[Promise]]] = defaultdict(list)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._last_role = Role.FOLLOWER
        self._last_leader: int | None = None
        self._known_addrs: dict[int, str] = {}
        self.leader_changed = asyncio.Event()
        self.wal: Wal
        self.core: PaxosCore
        self._wal_base = 0
        self._stopping = False

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        latest = await asyncio.to_thread(snapshot_files.latest, self.data_dir / SNAPSHOT_DIR)
        self.wal, replay = await asyncio.to_thread(
            Wal.open, self.data_dir / WAL_DIR, self.options.wal_segment_bytes
        )
        self._wal_base = self.wal.next_index - 1
        records: list[Record] = []
        if latest is not None:
            # The state as of the snapshot; the WAL after it holds the rest.
            self.machine.restore(latest.payload)
            settle_heap()
            self.snapshot_slot = self.applied_upto = latest.slot
            records.append(SnapshotRecord(latest.slot, latest.config))
        records += [decode_record(payload) for _, payload in replay]
        recovered = recover(records)
        low, high = self.options.election_timeout_s
        self.core = PaxosCore(
            self.node_id,
            self.bootstrap,
            recovered,
            self.options.core,
            election_timeout=lambda: self._rng.uniform(low, high),
            now=time.monotonic(),
            applied_upto=self.applied_upto,
        )
        log.info(
            "replica %d recovered: promised %s, chosen up to %d, %d log entries",
            self.node_id,
            recovered.promised,
            recovered.chosen_upto,
            len(recovered.log),
        )
        self._update_peers()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._pump_loop()),
            loop.create_task(self._tick_loop()),
            loop.create_task(self._session_tick_loop()),
        ]
        self._kick()

    async def drain(self, grace_s: float = 5.0) -> None:
        """Refuse new proposals and let those in flight finish (bounded)."""
        self._stopping = True
        pending = [f for f in self._proposals.values() if not f.done()]
        if pending:
            await asyncio.wait(pending, timeout=grace_s)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Drain, then stop every task, the transport and the WAL."""
        await self.drain(grace_s)
        for task in self._tasks + list(self._background):
            task.cancel()
        for task in self._tasks + list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.transport.close()
        await self.wal.close()

    # ---------------------------------------------------------------- API

    def leader_addr(self) -> str | None:
        leader = self.core.leader_id
        if leader is None:
            return None
        return self.core.config.addresses().get(leader) or self._known_addrs.get(leader)

    def status(self) -> Status:
        return self.core.status(time.monotonic())

    async def propose(self, command: bytes, timeout_s: float = 5.0) -> bytes:
        """Put `command` through the log; returns the state machine's result.

        Raises NotLeader when this replica does not lead (or stops leading
        before the command is applied); TimeoutError when the log stalls.
        A caller that retries must resend the same session sequence number.
        """
        if not self.core.is_leader or self._stopping:
            raise NotLeader(self.leader_addr())
        proposal_id = self._next_proposal
        self._next_proposal += 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._proposals[proposal_id] = future
        self._queued.append(ENVELOPE.pack(self.node_id, proposal_id) + command)
        self._kick()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        finally:
            self._proposals.pop(proposal_id, None)

    async def read_barrier(self, timeout_s: float = 5.0) -> None:
        """Return once local state reflects every write acknowledged before the call
        (a lease read when the lease holds, a read-index round otherwise)."""
        if not self.core.is_leader:
            raise NotLeader(self.leader_addr())
        read_id = self._next_read
        self._next_read += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reads[read_id] = future
        self.core.read(read_id, time.monotonic())
        self._kick()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
        finally:
            self._reads.pop(read_id, None)

    def transfer_leadership(self, target: int) -> bool:
        done = self.core.transfer_leadership(target, time.monotonic())
        self._kick()
        return done

    # ---------------------------------------------------------------- inputs

    def _kick(self) -> None:
        self._dirty.set()

    def _on_stream_message(self, pb: paxos_pb2.PeerMessage) -> None:
        message = message_from_pb(pb)
        if message is not None and pb.to == self.node_id:
            self.core.step(message, time.monotonic())
            self._kick()

    async def _on_prepare(self, pb: paxos_pb2.PrepareRequest) -> paxos_pb2.PrepareReply:
        """Phase 1 as a unary call: step the core, wait for its (durable) promise."""
        prepare = prepare_from_pb(pb)
        future: asyncio.Future[Promise] = asyncio.get_running_loop().create_future()
        self._promise_waiters[prepare.sender].append(future)
        self.core.step(prepare, time.monotonic())
        self._kick()
        try:
            return promise_pb(await asyncio.wait_for(future, self.options.prepare_timeout_s))
        except TimeoutError:
            # No answer (e.g. rule 3 after a restart): a refusal that names no ballot.
            return paxos_pb2.PrepareReply(promised=False, sender=self.node_id)
        finally:
            with contextlib.suppress(ValueError):
                self._promise_waiters[prepare.sender].remove(future)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.tick_interval_s)
            self.core.tick(time.monotonic())
            self._kick()

    async def _session_tick_loop(self) -> None:
        """Leader duty: a tick command in state time, idle or not, drives session expiry."""
        while True:
            await asyncio.sleep(self.options.session_tick_interval_s)
            if not self.core.is_leader:
                continue
            ballot = self.core.status(time.monotonic()).ballot
            tick = self.machine.tick_command(time.time_ns(), ballot.round, ballot.node)
            with contextlib.suppress(NotLeader, TimeoutError):
                await self.propose(tick)

    # ---------------------------------------------------------------- the pump

    async def _pump_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                self._drain()
            except Exception:  # a bug here must not silently stop the replica
                log.exception("replica %d: driver step failed", self.node_id)
                raise

    def _drain(self) -> None:
        now = time.monotonic()
        if self._queued:
            commands, self._queued = self._queued, []
            if not self.core.propose(commands, now):
                self._fail_proposals()
        while ready := self.core.ready():
            self._handle(ready)
        self._watch_leadership()

    def _handle(self, ready: Ready) -> None:
        if ready.records:
            last = self.wal.append(
                [encode_record(r) for r in ready.records], sync=ready.sync_needed
            )
            assert last == self._wal_base + ready.records_upto, "WAL and core disagree"
            if ready.sync_needed:
                self._spawn(self._await_durable(ready.records_upto))
        for outgoing in ready.messages:
            self._send(outgoing)
        for entry in ready.committed:
            self._apply(entry)
        for read in ready.reads:
            reader = self._reads.get(read.request_id)
            if reader is None or reader.done():
                continue
            if not read.ok:
                reader.set_exception(NotLeader(self.leader_addr()))
            elif read.read_index <= self.applied_upto:
                reader.set_result(None)
            else:
                self._reads_by_index[read.read_index].append(reader)
        for needed in ready.snapshots_needed:
            if needed.peer not in self._sending_snapshot:
                self._sending_snapshot.add(needed.peer)
                self._spawn(self._send_snapshot(needed.peer))
        for wanted in ready.snapshots_wanted:
            log.warning(
                "replica %d is behind replica %d's snapshot; it catches up when the "
                "leader sends one",
                self.node_id,
                wanted.source,
            )
        if ready.committed:
            self._maybe_snapshot()

    async def _await_durable(self, core_index: int) -> None:
        await self.wal.wait_durable(self._wal_base + core_index)
        self.core.durable(core_index, time.monotonic())
        self._kick()

    def _send(self, outgoing: Outgoing) -> None:
        message = outgoing.message
        if isinstance(message, Prepare):
            self._spawn(self._send_prepare(outgoing.to, message))
        elif isinstance(message, Promise) and self._promise_waiters.get(outgoing.to):
            for waiter in self._promise_waiters.pop(outgoing.to):
                if not waiter.done():
                    waiter.set_result(message)
        else:
            self.transport.send(message_to_pb(outgoing.to, message))

    async def _send_prepare(self, to: int, prepare: Prepare) -> None:
        reply = await self.transport.prepare(
            to, prepare_to_pb(prepare), self.options.prepare_timeout_s
        )
        if reply is not None:
            self.core.step(promise_from_pb(reply), time.monotonic())
            self._kick()

    def _apply(self, entry: LogEntry) -> None:
        for index, wrapped in enumerate(entry.commands):
            origin, proposal_id = ENVELOPE.unpack_from(wrapped)
            result = self.machine.apply(
                wrapped[ENVELOPE.size :], ApplyContext(entry.slot, index, 0, 0)
            )
            if origin == self.node_id:
                future = self._proposals.get(proposal_id)
                if future is not None and not future.done():
                    future.set_result(result)
        self.applied_upto = entry.slot
        self.commands_applied += len(entry.commands)
        if entry.config is not None:
            self._update_peers()
        for read_index in [i for i in self._reads_by_index if i <= self.applied_upto]:
            for reader in self._reads_by_index.pop(read_index):
                if not reader.done():
                    reader.set_result(None)

    # ---------------------------------------------------------------- snapshots

    def state_digest(self) -> int:
        """xxh64 of the whole replicated state as applied now (for equivalence checks)."""
        snapshot = getattr(self.machine, "snapshot", None)
        return xxhash.xxh64_intdigest(snapshot()) if snapshot is not None else 0

    def request_snapshot(self) -> bool:
        """Take a snapshot now (admin); False if one is already being taken."""
        if self._snapshotting or self.applied_upto <= self.snapshot_slot:
            return False
        self._start_snapshot()
        return True

    def _maybe_snapshot(self) -> None:
        if not self._snapshotting and (
            self.applied_upto - self.snapshot_slot >= self.options.snapshot_every
        ):
            self._start_snapshot()

    def _start_snapshot(self) -> None:
        self._snapshotting = True
        slot = self.applied_upto
        self.machine.begin_snapshot()  # the state as of `slot`; commands go on meanwhile
        self._spawn(self._take_snapshot(slot, self.core.config_at(slot)))

    async def _take_snapshot(self, slot: int, config: Config) -> None:
        started = time.monotonic()
        try:
            while True:
                step_started = time.monotonic()
                if self.machine.snapshot_step(self.options.snapshot_step_inodes):
                    break
                # Rest as long as the step ran: commits get at least half of the
                # event loop however long the snapshot takes (one turn of the loop
                # per step was not enough when every replica snapshots at once).
                await asyncio.sleep(time.monotonic() - step_started)
            payload = await asyncio.to_thread(self.machine.finish_snapshot)
            await asyncio.to_thread(
                snapshot_files.write, self.data_dir / SNAPSHOT_DIR, slot, config, payload
            )
            self.snapshot_slot = max(self.snapshot_slot, slot)
            settle_heap()
            self.core.compact(slot)
            await self._trim_wal()
            log.info(
                "snapshot at slot %d: %d bytes in %.2f s; WAL now %d bytes",
                slot,
                len(payload),
                time.monotonic() - started,
                self.wal.size_bytes(),
            )
        except Exception:
            log.exception("snapshot at slot %d failed; the log is kept whole", slot)
        finally:
            self._snapshotting = False

    async def _trim_wal(self) -> None:
        """Re-write what the acceptor must remember, then drop every older segment."""
        first = self.core.record_index + 1
        self.core.checkpoint()
        self._kick()
        await self.wal.wait_durable(self._wal_base + self.core.record_index)
        self.wal.drop_before(self._wal_base + first)

    def _snapshot_piece_bytes(self) -> int:
        """Pieces of a tenth of a second when the send rate is capped, so the pace is
        even; the configured size otherwise."""
        piece = self.options.snapshot_piece_bytes
        rate = self.options.snapshot_send_bytes_per_s
        return min(piece, max(MIN_SNAPSHOT_PIECE, rate // 10)) if rate else piece

    async def _send_snapshot(self, peer: int) -> None:
        """Stream our newest snapshot file to a replica the log can no longer catch up,
        from what it holds of that snapshot already, one piece in memory at a time."""
        reader: PieceReader | None = None
        try:
            path = await asyncio.to_thread(_newest_snapshot_path, self.data_dir / SNAPSHOT_DIR)
            link = self.transport.links.get(peer)
            if path is None or link is None:
                return
            piece_bytes = self._snapshot_piece_bytes()
            identity = await asyncio.to_thread(
                identify, path, snapshot_files.slot_of(path), piece_bytes
            )
            stub = paxos_pb2_grpc.PaxosStub(link.channel)
            held = await stub.OfferSnapshot(
                paxos_pb2.SnapshotOffer(
                    slot=identity.slot, total_size=identity.size, checksum=identity.checksum
                ),
                timeout=30,
            )
            if not held.needed:
                return
            reader = await asyncio.to_thread(PieceReader, path, piece_bytes)
            start = held.held if held.held <= identity.size else 0
            if start and await asyncio.to_thread(reader.skip_to, start) != held.running_checksum:
                start = await asyncio.to_thread(reader.skip_to, 0)  # its part is not ours
            if start:
                log.info(
                    "resuming snapshot %s to replica %d at byte %d of %d",
                    path.name, peer, start, identity.size,
                )
            rate = self.options.snapshot_send_bytes_per_s or SNAPSHOT_RATE_FLOOR
            reply = await stub.InstallSnapshot(
                self._snapshot_pieces(reader, identity),
                timeout=SNAPSHOT_TIMEOUT_S + (identity.size - start) / rate,
            )
            log.info(
                "sent snapshot %s (%d bytes from byte %d) to replica %d: %s",
                path.name,
                identity.size - start,
                start,
                peer,
                "installed" if reply.ok else reply.error,
            )
        except Exception as err:  # the core asks again while the peer still lags
            log.warning("snapshot transfer to replica %d failed: %s", peer, err)
        finally:
            if reader is not None:
                reader.close()
            self._sending_snapshot.discard(peer)

    async def _snapshot_pieces(
        self, reader: PieceReader, identity: SnapshotIdentity
    ) -> AsyncIterator[paxos_pb2.SnapshotChunk]:
        rate = self.options.snapshot_send_bytes_per_s
        ballot = self.core.status(time.monotonic()).ballot
        started, sent = time.monotonic(), 0
        while (piece := await asyncio.to_thread(reader.next_piece)) is not None:
            yield paxos_pb2.SnapshotChunk(
                slot=identity.slot,
                offset=piece.offset,
                data=piece.data,
                total_size=identity.size,
                checksum=identity.checksum,
                running_checksum=piece.running_checksum,
                last=piece.offset + len(piece.data) >= identity.size,
                ballot=paxos_pb2.Ballot(round=ballot.round, node=ballot.node),
            )
            sent += len(piece.data)
            if rate:
                await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))

    async def _on_offer_snapshot(self, offer: paxos_pb2.SnapshotOffer) -> paxos_pb2.SnapshotHeld:
        # While a transfer runs its part file is in use: the sender is asked again later.
        if offer.slot <= self.applied_upto or self._installing.locked():
            return paxos_pb2.SnapshotHeld(needed=False)
        identity = SnapshotIdentity(offer.slot, offer.total_size, offer.checksum)
        part = PartFile(
            self.data_dir / SNAPSHOT_DIR, identity, self.options.snapshot_piece_bytes
        )
        try:
            running = await asyncio.to_thread(part.open)
        finally:
            part.close()
        return paxos_pb2.SnapshotHeld(needed=True, held=part.held, running_checksum=running)

    async def _on_install_snapshot(
        self, pieces: AsyncIterator[paxos_pb2.SnapshotChunk]
    ) -> paxos_pb2.InstallSnapshotReply:
        if self._installing.locked():
            return paxos_pb2.InstallSnapshotReply(
                ok=False, error="another snapshot transfer is in progress"
            )
        async with self._installing:
            part: PartFile | None = None
            try:
                part = await self._receive_pieces(pieces)
                if part.identity.slot <= self.applied_upto:
                    return paxos_pb2.InstallSnapshotReply(ok=True, received=part.held)
                path = await asyncio.to_thread(part.finish)
            except PieceRejected as err:
                held = part.held if part is not None else 0
                return paxos_pb2.InstallSnapshotReply(ok=False, received=held, error=str(err))
            finally:
                if part is not None:
                    part.close()
            return await self._install_received(path)

    async def _receive_pieces(self, pieces: AsyncIterator[paxos_pb2.SnapshotChunk]) -> PartFile:
        """Append the stream's pieces to the part file of its snapshot (each one
        fsynced, so a broken stream resumes from it); returns it once whole."""
        part: PartFile | None = None
        try:
            async for chunk in pieces:
                identity = SnapshotIdentity(chunk.slot, chunk.total_size, chunk.checksum)
                if part is None:
                    part = PartFile(
                        self.data_dir / SNAPSHOT_DIR, identity, self.options.snapshot_piece_bytes
                    )
                    await asyncio.to_thread(part.open)
                elif identity != part.identity:
                    raise PieceRejected("pieces of two snapshots in one stream")
                await asyncio.to_thread(
                    part.write, Piece(chunk.offset, chunk.data, chunk.running_checksum)
                )
                if part.complete:
                    return part
        except BaseException:
            if part is not None:
                part.close()
            raise
        if part is not None:
            part.close()
        raise PieceRejected("the stream ended before the snapshot did")

    async def _install_received(self, path: Path) -> paxos_pb2.InstallSnapshotReply:
        data = await asyncio.to_thread(path.read_bytes)
        try:
            snap = snapshot_files.decode(data, str(path))
        except snapshot_files.SnapshotCorruption as err:
            path.unlink(missing_ok=True)
            return paxos_pb2.InstallSnapshotReply(ok=False, received=len(data), error=str(err))
        if snap.slot <= self.applied_upto:
            return paxos_pb2.InstallSnapshotReply(ok=True, received=len(data))
        self.machine.restore(snap.payload)
        settle_heap()
        self.core.install_snapshot(snap.slot, snap.config, time.monotonic())
        self.applied_upto = self.snapshot_slot = snap.slot
        self._kick()
        await self._trim_wal()
        log.info("installed a snapshot at slot %d (%d bytes)", snap.slot, len(data))
        return paxos_pb2.InstallSnapshotReply(ok=True, received=len(data))

    # ---------------------------------------------------------------- membership

    async def _change_config(self, voters: dict[int, str], learners: dict[int, str]) -> None:
        """Propose a configuration and wait until it (and a joint step's final form)
        is in force; raises NotLeader or TimeoutError."""
        deadline = time.monotonic() + 30
        while not self.core.propose_config(voters, learners, time.monotonic()):
            if not self.core.is_leader:
                raise NotLeader(self.leader_addr())
            if time.monotonic() > deadline:
                raise TimeoutError("another membership change did not finish")
            await asyncio.sleep(0.05)  # one change at a time
        self._kick()
        while True:
            config = self.core.config
            if (
                not config.is_joint
                and dict(config.voters) == voters
                and (dict(config.learners) == learners)
            ):
                return
            if not self.core.is_leader:
                raise NotLeader(self.leader_addr())
            if time.monotonic() > deadline:
                raise TimeoutError("the membership change was not chosen in time")
            await asyncio.sleep(0.02)

    async def add_member(self, member_id: int, addr: str) -> str:
        """Add a replica as a learner, let it catch up, then make it a voter (through
        a joint configuration). Idempotent."""
        config = self.core.config
        voters, learners = dict(config.voters), dict(config.learners)
        if voters.get(member_id) == addr:
            return f"replica {member_id} is already a voter"
        if member_id in voters or (member_id in learners and learners[member_id] != addr):
            raise ValueError(f"id {member_id} is taken by another address")
        if member_id not in learners:
            await self._change_config(voters, {**learners, member_id: addr})
            log.info("replica %d (%s) added as a learner", member_id, addr)
        self._spawn(self._promote(member_id, addr))
        return f"replica {member_id} added as a learner; it becomes a voter once caught up"

    async def _promote(self, member_id: int, addr: str) -> None:
        try:
            async with aio_channel(addr, self.transport.secret) as channel:
                stub = admin_pb2_grpc.AdminStub(channel)
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline and self.core.is_leader:
                    try:
                        status = await stub.Status(admin_pb2.StatusRequest(), timeout=2)
                        if status.meta.applied + 16 >= self.applied_upto:
                            break
                    except Exception:
                        pass
                    await asyncio.sleep(0.2)
                else:
                    log.warning("replica %d did not catch up; it stays a learner", member_id)
                    return
            config = self.core.config
            voters = {**dict(config.voters), member_id: addr}
            learners = {i: a for i, a in config.learners if i != member_id}
            await self._change_config(voters, learners)
            log.info("replica %d (%s) is a voter", member_id, addr)
        except (NotLeader, TimeoutError) as err:
            log.warning("promotion of replica %d stopped: %s", member_id, err)

    async def remove_member(self, member_id: int) -> str:
        """Remove a replica; the leader removing itself hands leadership over first."""
        config = self.core.config
        voters, learners = dict(config.voters), dict(config.learners)
        if member_id not in voters and member_id not in learners:
            return f"replica {member_id} is not a member"
        if member_id == self.node_id:
            others = sorted(v for v in voters if v != self.node_id)
            if not others or not self.transfer_leadership(others[0]):
                raise ValueError("no other voter to hand leadership to")
            return f"leadership handed to replica {others[0]}; ask again to remove {member_id}"
        voters.pop(member_id, None)
        learners.pop(member_id, None)
        if not voters:
            raise ValueError("cannot remove the last voter")
        await self._change_config(voters, learners)
        return f"replica {member_id} removed"

    async def _on_join(self, request: paxos_pb2.JoinRequest) -> paxos_pb2.JoinReply:
        if self.cluster_id and request.cluster_id != self.cluster_id:
            return paxos_pb2.JoinReply(error=f"cluster {request.cluster_id!r} is not this one")
        if not self.core.is_leader:
            return paxos_pb2.JoinReply(leader_addr=self.leader_addr() or "", error="not the leader")
        try:
            await self.add_member(request.id, request.addr)
        except (ValueError, NotLeader, TimeoutError) as err:
            return paxos_pb2.JoinReply(error=str(err), leader_addr=self.leader_addr() or "")
        return paxos_pb2.JoinReply(accepted=True, config=config_to_pb(self.core.config))

    def _update_peers(self) -> None:
        addresses = self.core.config.addresses()
        self._known_addrs.update(addresses)
        self.transport.set_peers(addresses)

    def _watch_leadership(self) -> None:
        role, leader = self.core.role, self.core.leader_id
        if self._last_role is Role.LEADER and role is not Role.LEADER:
            log.info("replica %d stepped down", self.node_id)
            self._fail_proposals()
        if role is Role.LEADER and self._last_role is not Role.LEADER:
            log.info("replica %d leads (ballot %s)", self.node_id, self.status().ballot)
        if leader != self._last_leader:
            self.leader_changed.set()
        self._last_role, self._last_leader = role, leader

    def _fail_proposals(self) -> None:
        """Leadership is gone: tell every waiting proposer to retry at the new leader.
        A command that is chosen anyway is answered from the session table on retry."""
        error = NotLeader(self.leader_addr())
        for future in self._proposals.values():
            if not future.done():
                future.set_exception(error)
        for reader in self._reads.values():
            if not reader.done():
                reader.set_exception(error)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
