"""One replica's Multi-Paxos as a pure object: messages, proposals, reads and ticks in;
one `Ready` batch out (records to persist, messages to send, chosen entries, reads).

Owns every protocol rule: promises, phase 1 and 2, the chosen point, leadership,
leases (DESIGN.md's rules 1-6), read-index, joint membership. Must never touch a
clock, a file, the network or a random source: time arrives with each call and
election timeouts come from the `election_timeout` callable the driver supplies.

Driver contract (see docs/paxos.md):
  1. after any input, `ready()`; append `ready.records` to the WAL (in order);
  2. send `ready.messages` at once: the core itself withholds every message whose
     records are not yet durable, and releases it after `durable()`;
  3. apply `ready.committed` in order, then serve `ready.reads` once applied >=
     read_index;
  4. when `ready.sync_needed`, fsync the WAL; when the fsync covering record
     `ready.records_upto` completes, call `durable(records_upto, now)` (group
     commit: one call may cover many Readies). A Ready whose records are only
     chosen-point hints needs no fsync of its own: they ride with the next one.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from dfs.paxos.ballot import ZERO_BALLOT, Ballot, next_ballot
from dfs.paxos.config import Config
from dfs.paxos.messages import (
    Accept,
    Accepted,
    Heartbeat,
    HeartbeatAck,
    LogEntry,
    Message,
    Outgoing,
    Prepare,
    Promise,
    TimeoutNow,
)
from dfs.paxos.planted import PlantedBug
from dfs.paxos.progress import NEVER, Progress
from dfs.paxos.quorum import has_quorum, quorum_value
from dfs.paxos.records import (
    AcceptRecord,
    ChosenRecord,
    PromiseRecord,
    Record,
    RecoveredState,
    SnapshotRecord,
)

log = logging.getLogger(__name__)

FOREVER = float("inf")
# Heartbeat send times are kept for this many rounds; an ack older than that is
# too old to extend a lease anyway.
_HEARTBEAT_HISTORY = 64


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class Options:
    heartbeat_interval: float = 0.05  # seconds between leader heartbeats
    # A follower's grant lasts lease_duration on its clock (rule 1); the leader counts
    # lease_duration - lease_drift_margin from before it sent the heartbeat (rule 2).
    # Must stay below the shortest election timeout.
    lease_duration: float = 0.5
    lease_drift_margin: float = 0.025
    window: int = 16  # slots a leader may have proposed and not yet seen chosen
    max_batch: int = 256  # commands per slot
    max_entries_per_message: int = 32
    planted: frozenset[PlantedBug] = frozenset()  # test-only; always empty in production


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read that became safe: serve it once applied >= read_index. ok=False: this
    replica cannot serve it (not leader, or lost leadership); ask the leader."""

    request_id: int
    read_index: int
    ok: bool


@dataclass(frozen=True, slots=True)
class SnapshotNeeded:
    """The leader's log no longer holds what `peer` needs: send it a snapshot."""

    peer: int
    log_start: int


@dataclass(frozen=True, slots=True)
class SnapshotWanted:
    """This replica is behind `source`'s snapshot (it cannot lead without the chosen
    values it dropped): fetch a snapshot from `source`, then `install_snapshot`."""

    source: int
    log_start: int


@dataclass(frozen=True, slots=True)
class Ready:
    records: tuple[Record, ...] = ()
    records_upto: int = 0  # index of the last record handed out so far
    messages: tuple[Outgoing, ...] = ()
    committed: tuple[LogEntry, ...] = ()
    reads: tuple[ReadState, ...] = ()
    snapshots_needed: tuple[SnapshotNeeded, ...] = ()
    snapshots_wanted: tuple[SnapshotWanted, ...] = ()
    # False when every record is a ChosenRecord: a hint a restart can relearn from
    # the leader, so it waits for the next fsync instead of costing one.
    sync_needed: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.records
            or self.messages
            or self.committed
            or self.reads
            or self.snapshots_needed
            or self.snapshots_wanted
        )


@dataclass(frozen=True, slots=True)
class Status:
    node_id: int
    role: Role
    ballot: Ballot  # highest promised ballot (the leader's own, when leading)
    leader_id: int | None
    chosen_upto: int
    committed_upto: int  # chosen entries handed to the driver for apply
    lease_left: float  # seconds of lease-read validity left; 0 when none
    config: Config


@dataclass(slots=True)
class _LeaderState:
    """Everything that exists only while this replica leads."""

    progress: dict[int, Progress]
    last_slot: int
    ready_slot: int  # rule 4: lease/read-index reads wait until this slot is chosen
    pending_commands: list[bytes] = field(default_factory=list)
    heartbeat_seq: int = 0
    heartbeat_sent: dict[int, float] = field(default_factory=dict)
    next_heartbeat_at: float = NEVER
    heartbeat_ready_epoch: int = -1  # ready() count when the last round was queued
    lease_floor_seq: int = 0  # rule 5: acks of heartbeats at or below this grant nothing
    transfer_target: int | None = None
    transfer_deadline: float = NEVER
    reads_waiting: list[tuple[int, int, int]] = field(default_factory=list)  # id, index, seq
    reads_unready: list[int] = field(default_factory=list)


class PaxosCore:
    """One replica. Not thread-safe: the driver calls it from one task.

    `recovered` is `recover(records replayed from the WAL)`; when the driver restored
    a snapshot at slot S, pass applied_upto=S and make sure the replay ends with its
    SnapshotRecord(S, config) (append one if the WAL lost it). `election_timeout`
    returns a fresh randomized timeout each call; keep it above `lease_duration`.
    """

    def __init__(
        self,
        node_id: int,
        bootstrap_config: Config,
        recovered: RecoveredState | None,
        options: Options,
        election_timeout: Callable[[], float],
        now: float,
        applied_upto: int = 0,
    ) -> None:
        state = recovered or RecoveredState()
        self.node_id = node_id
        self._options = options
        self._election_timeout = election_timeout
        self._now = now
        self._promised = state.promised
        self._log: dict[int, LogEntry] = dict(state.log)
        self._log_start = state.snapshot_slot + 1
        self._chosen_upto = state.chosen_upto
        self._recorded_chosen = state.chosen_upto
        self._committed_upto = max(applied_upto, state.snapshot_slot)
        self._config_history: list[tuple[int, Config]] = [
            (state.snapshot_slot, state.snapshot_config or bootstrap_config)
        ]
        for slot in range(self._log_start, self._chosen_upto + 1):
            self._note_chosen_config(slot)
        self._role = Role.FOLLOWER
        self._leader_id: int | None = None
        self._highest_seen = self._promised
        self._ballot = ZERO_BALLOT  # the ballot this replica campaigns or leads with
        self._election_deadline = now + election_timeout()
        # Rule 3: a restarted acceptor has forgotten its lease grants, so it promises
        # nothing (not even to itself) for one full lease period.
        restart_guard = 0.0 if PlantedBug.PROMISE_AFTER_RESTART in options.planted else 1.0
        self._no_promise_until = now + options.lease_duration * restart_guard
        self._grant_ballot = ZERO_BALLOT
        self._grant_until = NEVER
        self._contig_ballot = ZERO_BALLOT
        self._contig = self._chosen_upto
        # Output buffers.
        self._records: list[Record] = []
        self._record_index = 0
        self._sync_index = 0  # last record that must be durable before answers about it
        self.elections_started = 0  # campaigns begun (a metric: leadership churn)
        self._durable_index = 0
        self._held: deque[tuple[int, Outgoing]] = deque()
        self._messages: list[Outgoing] = []
        self._reads: list[ReadState] = []
        self._snapshots_needed: list[SnapshotNeeded] = []
        self._snapshots_wanted: list[SnapshotWanted] = []
        self._ready_epoch = 0  # counts ready() calls: messages queued before it left
        # Candidate and leader state.
        self._promises: dict[int, Promise] = {}
        self._prepare_from = 0
        self._prepared_peers: set[int] = set()
        self._prepare_resend_at = NEVER
        self._leader: _LeaderState | None = None

    # ------------------------------------------------------------------ queries

    @property
    def role(self) -> Role:
        return self._role

    @property
    def is_leader(self) -> bool:
        return self._role is Role.LEADER

    @property
    def leader_id(self) -> int | None:
        return self._leader_id

    @property
    def chosen_upto(self) -> int:
        return self._chosen_upto

    @property
    def config(self) -> Config:
        return self._config_history[-1][1]

    def config_at(self, slot: int) -> Config:
        """The configuration chosen at or before `slot` (for snapshots)."""
        result = self._config_history[0][1]
        for chosen_at, config in self._config_history:
            if chosen_at <= slot:
                result = config
        return result

    def status(self, now: float) -> Status:
        lease_left = max(0.0, self._lease_until() - now) if self._lease_usable() else 0.0
        return Status(
            node_id=self.node_id,
            role=self._role,
            ballot=self._ballot if self.is_leader else self._promised,
            leader_id=self._leader_id,
            chosen_upto=self._chosen_upto,
            committed_upto=self._committed_upto,
            lease_left=lease_left,
            config=self.config,
        )

    # ------------------------------------------------------------------ inputs

    def tick(self, now: float) -> None:
        """Advance time: elections, heartbeats, transfer timeouts."""
        self._now = max(self._now, now)
        leader = self._leader
        if leader is not None:
            if leader.transfer_target is not None:
                # No heartbeats (so no fresh grants) while the target campaigns.
                if self._now >= leader.transfer_deadline:
                    self._abort_transfer(leader)
            elif self._now >= leader.next_heartbeat_at:
                self._broadcast_heartbeat(leader)
            return
        if self._now >= self._election_deadline:
            self._start_election()
        elif self._role is Role.CANDIDATE and self._now >= self._prepare_resend_at:
            # Prepares (or promises) may have been lost, or an acceptor may have been
            # unable to promise yet (rules 1 and 3): ask the silent ones again.
            self._prepare_resend_at = self._now + self._options.heartbeat_interval
            silent = self._prepared_peers - set(self._promises)
            self._prepared_peers -= silent
            self._send_prepares(silent)

    def step(self, message: Message, now: float) -> None:
        """Handle one message from a peer."""
        self._now = max(self._now, now)
        self._dispatch(message)

    def propose(self, commands: Sequence[bytes], now: float) -> bool:
        """Queue commands for the log; False if this replica cannot propose now."""
        self._now = max(self._now, now)
        leader = self._leader
        if leader is None or leader.transfer_target is not None:
            return False
        leader.pending_commands.extend(commands)
        self._flush_proposals(leader)
        return True

    def propose_config(
        self, voters: Mapping[int, str], learners: Mapping[int, str], now: float
    ) -> bool:
        """Start a membership change (joint when the voters change). False if not
        leader or a change is already in flight."""
        self._now = max(self._now, now)
        leader = self._leader
        if leader is None or self._config_in_flight(leader) or self.config.is_joint:
            return False
        current = self.config
        if set(voters) == set(current.voter_ids):
            new_config = Config.of(voters, learners)
        else:
            new_config = current.joint_to(voters, learners)
        self._append_entries(leader, [LogEntry(leader.last_slot + 1, self._ballot, (), new_config)])
        return True

    def read(self, request_id: int, now: float) -> None:
        """Ask for a linearizable read; the answer comes as a ReadState in a Ready."""
        self._now = max(self._now, now)
        leader = self._leader
        if leader is None or leader.transfer_target is not None:
            self._reads.append(ReadState(request_id, 0, False))
        elif self._chosen_upto < leader.ready_slot:
            leader.reads_unready.append(request_id)
        else:
            self._serve_read(leader, request_id)

    def transfer_leadership(self, target: int, now: float) -> bool:
        """Hand leadership to `target`: end lease reads first (rule 5), then tell it."""
        self._now = max(self._now, now)
        leader = self._leader
        if leader is None or target not in self.config.voter_ids or target == self.node_id:
            return False
        leader.transfer_target = target
        leader.transfer_deadline = self._now + self._election_timeout()
        for peer in self._peers():
            self._send(peer, TimeoutNow(self.node_id, self._ballot, target))
        return True

    def durable(self, upto_record: int, now: float) -> None:
        """Records up to index `upto_record` are on disk: release what waited on them."""
        self._now = max(self._now, now)
        self._durable_index = max(self._durable_index, upto_record)
        while self._held and self._held[0][0] <= self._durable_index:
            _, outgoing = self._held.popleft()
            self._emit(outgoing)

    def install_snapshot(self, slot: int, config: Config, now: float) -> None:
        """The driver restored a snapshot covering every slot <= slot (from the leader)."""
        self._now = max(self._now, now)
        if slot <= self._chosen_upto:
            return
        self._log = {s: e for s, e in self._log.items() if s > slot}
        self._log_start = slot + 1
        self._chosen_upto = slot
        self._committed_upto = slot
        self._config_history = [(slot, config)]
        self._contig = max(self._contig, slot)
        self._append_record(SnapshotRecord(slot, config))

    @property
    def record_index(self) -> int:
        """Index of the last record handed out so far (the driver's WAL numbering)."""
        return self._record_index

    def checkpoint(self) -> None:
        """Re-issue, as new records, everything this acceptor must remember: the
        snapshot point, its promise, every accepted entry after the snapshot and the
        chosen point. Once they are durable, every earlier WAL record may go."""
        snapshot_slot = self._log_start - 1
        self._append_record(SnapshotRecord(snapshot_slot, self.config_at(snapshot_slot)))
        self._append_record(PromiseRecord(self._promised))
        entries = tuple(self._log[slot] for slot in sorted(self._log))
        if entries:
            self._append_record(AcceptRecord(entries))
        if self._recorded_chosen:
            self._append_record(ChosenRecord(self._recorded_chosen))

    def compact(self, upto_slot: int) -> None:
        """The driver took a snapshot covering every slot <= upto_slot: drop that log."""
        upto_slot = min(upto_slot, self._committed_upto)
        if upto_slot < self._log_start:
            return
        config = self.config_at(upto_slot)
        for slot in range(self._log_start, upto_slot + 1):
            self._log.pop(slot, None)
        self._log_start = upto_slot + 1
        self._config_history = [(upto_slot, config)] + [
            (s, c) for s, c in self._config_history if s > upto_slot
        ]
        self._append_record(SnapshotRecord(upto_slot, config))

    def ready(self) -> Ready:
        """Take everything produced since the last call."""
        if self._chosen_upto > self._recorded_chosen:
            self._recorded_chosen = self._chosen_upto
            self._append_record(ChosenRecord(self._chosen_upto))
        committed: tuple[LogEntry, ...] = ()
        if self._chosen_upto > self._committed_upto:
            first = self._committed_upto + 1
            committed = tuple(self._log[s] for s in range(first, self._chosen_upto + 1))
            self._committed_upto = self._chosen_upto
        batch = Ready(
            records=tuple(self._records),
            records_upto=self._record_index,
            sync_needed=any(not isinstance(r, ChosenRecord) for r in self._records),
            messages=tuple(self._messages),
            committed=committed,
            reads=tuple(self._reads),
            snapshots_needed=tuple(self._snapshots_needed),
            snapshots_wanted=tuple(self._snapshots_wanted),
        )
        self._ready_epoch += 1
        self._records.clear()
        self._messages.clear()
        self._reads.clear()
        self._snapshots_needed.clear()
        self._snapshots_wanted.clear()
        return batch

    # ------------------------------------------------------------------ plumbing

    def _append_record(self, record: Record) -> None:
        self._records.append(record)
        self._record_index += 1
        if not isinstance(record, ChosenRecord):
            self._sync_index = self._record_index

    def _send(self, to: int, message: Message) -> None:
        """Send now: the message promises nothing that is not already durable."""
        self._emit(Outgoing(to, message))

    def _send_after_durable(self, to: int, message: Message) -> None:
        """Send once every record written so far is durable (it answers for them;
        chosen-point hints excepted: no message vouches for them)."""
        if (
            self._sync_index <= self._durable_index
            or PlantedBug.ACK_BEFORE_DURABLE in self._options.planted
        ):
            self._emit(Outgoing(to, message))
        else:
            self._held.append((self._sync_index, Outgoing(to, message)))

    def _emit(self, outgoing: Outgoing) -> None:
        if outgoing.to == self.node_id:
            self._dispatch(outgoing.message)
        else:
            self._messages.append(outgoing)

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, Accept):
            self._on_accept(message)
        elif isinstance(message, Accepted):
            self._on_accepted(message)
        elif isinstance(message, Heartbeat):
            self._on_heartbeat(message)
        elif isinstance(message, HeartbeatAck):
            self._on_heartbeat_ack(message)
        elif isinstance(message, Prepare):
            self._on_prepare(message)
        elif isinstance(message, Promise):
            self._on_promise(message)
        else:
            self._on_timeout_now(message)

    def _peers(self) -> set[int]:
        """Every other replica that receives the log, across configs in flight."""
        members = set(self.config.member_ids)
        if self._leader is not None:
            for config in self._pending_configs(self._leader):
                members |= config.member_ids
        members.discard(self.node_id)
        return members

    def _observe(self, ballot: Ballot) -> None:
        if ballot > self._highest_seen:
            self._highest_seen = ballot

    def _reset_election_timer(self) -> None:
        self._election_deadline = self._now + self._election_timeout()

    # ------------------------------------------------------------------ acceptor

    def _can_promise(self, ballot: Ballot) -> bool:
        if self._now < self._no_promise_until:
            return False  # rule 3
        if self._lease_holds_against(ballot):
            return False
        # Rule 1: no higher ballot while a lease grant is running.
        return not (ballot > self._grant_ballot and self._now < self._grant_until)

    def _lease_holds_against(self, ballot: Ballot) -> bool:
        """A leader whose majority still grants it a lease promises no higher ballot
        (but to its own transfer target). Those followers refuse the candidate anyway
        (rule 1); a leader that promised would only step down for nothing, leaving a
        replica that lost touch with the group (one just removed) free to win later."""
        leader = self._leader
        return (
            leader is not None
            and ballot.node != leader.transfer_target
            and self._lease_until() > self._now
        )

    def _known_voters(self) -> frozenset[int]:
        """Every replica that votes in the chosen configuration or in one this
        acceptor accepted since: the only ones it lets campaign."""
        voters = self._voter_ids()
        for slot, entry in self._log.items():
            if slot > self._chosen_upto and entry.config is not None:
                voters |= entry.config.voter_ids | entry.config.old_voter_ids
        return voters

    def _raise_promise(self, ballot: Ballot) -> None:
        """Adopt a higher ballot: step down from any leadership of a lower one."""
        if ballot <= self._promised:
            return
        self._promised = ballot
        self._observe(ballot)
        if self._role is not Role.FOLLOWER and self._ballot < ballot:
            self._step_down()

    def _on_prepare(self, msg: Prepare) -> None:
        self._observe(msg.ballot)
        if msg.ballot < self._promised:
            self._send(msg.sender, self._refusal(msg.sender))
            return
        if msg.ballot > self._promised:
            if msg.sender not in self._known_voters():
                # A removed replica that missed its removal must never lead: the
                # group would follow its heartbeats while no reply reaches it.
                self._send(msg.sender, self._refusal(msg.sender))
                return
            if not self._can_promise(msg.ballot):
                return  # silence: the candidate retries after its timeout
            self._raise_promise(msg.ballot)
            self._append_record(PromiseRecord(msg.ballot))
            if msg.sender != self.node_id:
                self._leader_id = None
                self._reset_election_timer()
        accepted = tuple(e for s, e in sorted(self._log.items()) if s >= msg.from_slot)
        promise = Promise(
            self.node_id, True, msg.ballot, accepted, self._chosen_upto, self._log_start
        )
        self._send_after_durable(msg.sender, promise)

    def _refusal(self, to: int) -> Promise:
        return Promise(self.node_id, False, self._promised, (), self._chosen_upto, self._log_start)

    def _on_accept(self, msg: Accept) -> None:
        self._observe(msg.ballot)
        lower_ok = PlantedBug.ACCEPT_LOWER_BALLOT in self._options.planted
        if msg.ballot < self._promised and not lower_ok:
            nack = Accepted(self.node_id, msg.ballot, 0, False, self._promised, self._contig + 1)
            self._send(msg.sender, nack)
            return
        if msg.sender != self.node_id:
            self._follow(msg.ballot)
        # Accepting (b, v) records v under b, whatever ballot the leader's copy of a
        # chosen entry still carries.
        fresh = tuple(
            e if e.ballot == msg.ballot else LogEntry(e.slot, msg.ballot, e.commands, e.config)
            for e in msg.entries
            if e.slot > self._chosen_upto and e.slot >= self._log_start
        )
        raised = msg.ballot > self._promised
        self._raise_promise(msg.ballot)
        if fresh:
            for entry in fresh:
                self._log[entry.slot] = entry
            self._append_record(AcceptRecord(fresh))
        elif raised:
            self._append_record(PromiseRecord(msg.ballot))
        self._extend_contig(msg.ballot)
        self._learn_chosen(msg.ballot, msg.chosen_upto)
        reply = Accepted(self.node_id, msg.ballot, self._contig, True, msg.ballot, self._contig + 1)
        self._send_after_durable(msg.sender, reply)

    def _follow(self, ballot: Ballot) -> None:
        """A leader of `ballot` is alive: follow it, and stay quiet for a timeout."""
        if ballot < self._promised:
            return
        if self._role is not Role.FOLLOWER and self._ballot < ballot:
            self._step_down()
        if self._role is Role.FOLLOWER:
            self._leader_id = ballot.node
            self._reset_election_timer()

    def _extend_contig(self, ballot: Ballot) -> None:
        """Grow the prefix this acceptor holds under `ballot` (or knows chosen)."""
        if ballot != self._contig_ballot:
            self._contig_ballot = ballot
            self._contig = self._chosen_upto
        self._contig = max(self._contig, self._chosen_upto)
        entry = self._log.get(self._contig + 1)
        while entry is not None and entry.ballot == ballot:
            self._contig += 1
            entry = self._log.get(self._contig + 1)

    def _learn_chosen(self, ballot: Ballot, leader_chosen: int) -> None:
        """Slots the leader of `ballot` calls chosen and this acceptor holds under it
        carry the chosen value (one value per slot per ballot)."""
        if ballot != self._contig_ballot or self.is_leader:
            return
        upto = min(leader_chosen, self._contig)
        if upto > self._chosen_upto:
            self._set_chosen(upto)

    def _on_heartbeat(self, msg: Heartbeat) -> None:
        self._observe(msg.ballot)
        if msg.ballot < self._promised:
            self._send(msg.sender, HeartbeatAck(self.node_id, self._promised, msg.seq, False, 0))
            return
        self._follow(msg.ballot)
        if self._role is Role.LEADER:
            return
        # Rule 1: this ack is a lease grant; refuse higher ballots until it runs out.
        self._grant_ballot = msg.ballot
        self._grant_until = self._now + self._options.lease_duration
        if msg.ballot == self._contig_ballot:
            self._extend_contig(msg.ballot)
            self._learn_chosen(msg.ballot, msg.chosen_upto)
        held = self._contig if msg.ballot == self._contig_ballot else self._chosen_upto
        ack = HeartbeatAck(self.node_id, msg.ballot, msg.seq, True, held)
        self._send_after_durable(msg.sender, ack)

    def _on_timeout_now(self, msg: TimeoutNow) -> None:
        if msg.ballot != self._grant_ballot or msg.ballot < self._promised:
            return
        # The old leader ended its lease reads before sending this (rule 5).
        self._grant_until = NEVER
        if msg.target == self.node_id:
            self._start_election()

    # ------------------------------------------------------------------ chosen

    def _set_chosen(self, upto: int) -> None:
        for slot in range(self._chosen_upto + 1, upto + 1):
            self._note_chosen_config(slot)
        self._chosen_upto = upto
        self._contig = max(self._contig, upto)
        leader = self._leader
        if leader is not None:
            self._after_leader_commit(leader)

    def _note_chosen_config(self, slot: int) -> None:
        entry = self._log.get(slot)
        if entry is not None and entry.config is not None:
            self._config_history.append((slot, entry.config))

    def _voter_ids(self) -> frozenset[int]:
        config = self.config
        return config.voter_ids | config.old_voter_ids

    # ------------------------------------------------------------------ elections

    def _start_election(self) -> None:
        ballot = next_ballot(max(self._highest_seen, self._promised), self.node_id)
        self._reset_election_timer()
        if self.node_id not in self.config.voter_ids:
            # Learners and removed replicas never campaign; nor does a voter that a
            # chosen joint configuration is leaving: as leader it could only finish
            # the change that removes it, and the new voters can do that themselves.
            return
        if not self._can_promise(ballot):
            # Rules 1/3 keep even our own promise back; try again once they allow.
            self._election_deadline = max(self._no_promise_until, self._grant_until)
            self._election_deadline += self._election_timeout() / 4
            return
        if self._leader is not None:
            self._step_down()
        self._role = Role.CANDIDATE
        self.elections_started += 1
        self._ballot = ballot
        self._leader_id = None
        self._promises = {}
        self._prepare_from = self._chosen_upto + 1
        self._prepared_peers = set()
        self._prepare_resend_at = self._now + self._options.heartbeat_interval
        log.debug("node %s campaigns with ballot %s", self.node_id, ballot)
        # Our own promise is durable before any Prepare leaves: a restart must never
        # reuse this ballot, or one ballot could carry two values for a slot.
        self._promised = ballot
        self._observe(ballot)
        self._append_record(PromiseRecord(ballot))
        self._send_prepares(self._voter_ids() | {self.node_id})

    def _send_prepares(self, voters: set[int] | frozenset[int]) -> None:
        for voter in sorted(voters - self._prepared_peers):
            self._prepared_peers.add(voter)
            prepare = Prepare(self.node_id, self._ballot, self._prepare_from)
            self._send_after_durable(voter, prepare)

    def _on_promise(self, msg: Promise) -> None:
        self._observe(msg.promised_ballot)
        if self._role is not Role.CANDIDATE:
            return
        if not msg.promised:
            if msg.promised_ballot > self._ballot:
                self._step_down()
            return
        if msg.promised_ballot != self._ballot:
            return
        if msg.log_start > self._prepare_from:
            # The acceptor dropped slots we do not know chosen: leading now could fill
            # them with no-ops. Give up this election and catch up from its snapshot.
            self._snapshots_wanted.append(SnapshotWanted(msg.sender, msg.log_start))
            self._step_down()
            return
        self._promises[msg.sender] = msg
        self._try_finish_phase1()

    def _try_finish_phase1(self) -> None:
        best: dict[int, LogEntry] = {}
        for promise in self._promises.values():
            for entry in promise.accepted:
                if entry.slot <= self._chosen_upto:
                    continue
                known = best.get(entry.slot)
                if known is None or entry.ballot > known.ballot:
                    best[entry.slot] = entry
        # A config entry among the open slots may be chosen; the slots after it were
        # then decided by its quorums, so phase 1 needs those majorities too.
        configs = [self.config] + [best[s].config for s in sorted(best) if best[s].config]
        needed: set[int] = set()
        for config in configs:
            if config is not None:
                needed |= config.voter_ids | config.old_voter_ids
        self._send_prepares(needed)
        if not has_quorum([c for c in configs if c is not None], set(self._promises)):
            return
        self._become_leader(best)

    def _become_leader(self, best: dict[int, LogEntry]) -> None:
        first_open = self._chosen_upto + 1
        last_seen = max(best, default=self._chosen_upto)
        entries = []
        for slot in range(first_open, last_seen + 1):
            old = best.get(slot)
            commands, config = (old.commands, old.config) if old else ((), None)
            entries.append(LogEntry(slot, self._ballot, commands, config))
        # Rule 4: an entry of our own ballot; lease reads wait until it is chosen.
        ready_slot = last_seen + 1
        entries.append(LogEntry(ready_slot, self._ballot))
        progress = {p: Progress(next=first_open) for p in self._peers() | {self.node_id}}
        for peer, promise in self._promises.items():
            if peer in progress:
                progress[peer].next = max(first_open, promise.chosen_upto + 1)
        self._role = Role.LEADER
        self._leader_id = self.node_id
        self._promises = {}
        self._leader = _LeaderState(progress, last_slot=self._chosen_upto, ready_slot=ready_slot)
        log.debug(
            "node %s leads with ballot %s from slot %s", self.node_id, self._ballot, first_open
        )
        self._append_entries(self._leader, entries)
        self._broadcast_heartbeat(self._leader)

    def _step_down(self) -> None:
        leader = self._leader
        if leader is not None:
            for request_id, _, _ in leader.reads_waiting:
                self._reads.append(ReadState(request_id, 0, False))
            for request_id in leader.reads_unready:
                self._reads.append(ReadState(request_id, 0, False))
        self._leader = None
        self._role = Role.FOLLOWER
        self._leader_id = None
        self._promises = {}
        self._reset_election_timer()

    # ------------------------------------------------------------------ leader

    def _pending_configs(self, leader: _LeaderState) -> list[Config]:
        configs = []
        for slot in range(self._chosen_upto + 1, leader.last_slot + 1):
            config = self._log[slot].config
            if config is not None:
                configs.append(config)
        return configs

    def _config_in_flight(self, leader: _LeaderState) -> bool:
        return self._barrier(leader) is not None

    def _barrier(self, leader: _LeaderState) -> int | None:
        """The first unchosen config slot: nothing after it is sent or chosen until it
        is chosen, so every slot's quorum is known when it is decided."""
        for slot in range(self._chosen_upto + 1, leader.last_slot + 1):
            if self._log[slot].config is not None:
                return slot
        return None

    def _quorum_configs(self, leader: _LeaderState) -> list[Config]:
        """Rule 6: while a change is in flight, both the old and the new majorities."""
        return [self.config, *self._pending_configs(leader)]

    def _flush_proposals(self, leader: _LeaderState) -> None:
        entries = []
        next_slot = leader.last_slot + 1
        while (
            leader.pending_commands
            and next_slot - 1 - self._chosen_upto < self._options.window
            and self._barrier(leader) is None
        ):
            batch = leader.pending_commands[: self._options.max_batch]
            del leader.pending_commands[: self._options.max_batch]
            entries.append(LogEntry(next_slot, self._ballot, tuple(batch)))
            next_slot += 1
        if entries:
            self._append_entries(leader, entries)

    def _append_entries(self, leader: _LeaderState, entries: list[LogEntry]) -> None:
        """Accept our own proposals durably, then replicate them."""
        for entry in entries:
            self._log[entry.slot] = entry
        leader.last_slot = entries[-1].slot
        self._append_record(AcceptRecord(tuple(entries)))
        # Our own vote counts only once our accept record is durable.
        own = Accepted(
            self.node_id, self._ballot, leader.last_slot, True, self._ballot, leader.last_slot + 1
        )
        self._send_after_durable(self.node_id, own)
        for peer in self._peers():
            if peer not in leader.progress:
                leader.progress[peer] = Progress(next=self._chosen_upto + 1)
            self._replicate(leader, peer)

    def _replicate(self, leader: _LeaderState, peer: int) -> None:
        progress = leader.progress[peer]
        barrier = self._barrier(leader)
        limit = leader.last_slot if barrier is None else barrier
        if progress.next < self._log_start:
            self._snapshots_needed.append(SnapshotNeeded(peer, self._log_start))
            return
        step = self._options.max_entries_per_message
        while progress.next <= limit:
            end = min(limit, progress.next + step - 1)
            entries = tuple(self._log[s] for s in range(progress.next, end + 1))
            self._send(peer, Accept(self.node_id, self._ballot, entries, self._chosen_upto))
            progress.next = end + 1

    def _on_accepted(self, msg: Accepted) -> None:
        self._observe(msg.promised_ballot)
        leader = self._leader
        if leader is None:
            return
        if not msg.ok:
            if msg.promised_ballot > self._ballot:
                self._step_down()
            return
        if msg.ballot != self._ballot:
            return
        progress = leader.progress.get(msg.sender)
        if progress is None:
            return
        progress.responded = True
        if msg.accepted_upto > progress.match:
            progress.match = msg.accepted_upto
            progress.next = max(progress.next, msg.accepted_upto + 1)
            self._advance_commit(leader)
        if self._leader is leader:
            self._replicate(leader, msg.sender)

    def _advance_commit(self, leader: _LeaderState) -> None:
        while True:
            matches = {peer: float(p.match) for peer, p in leader.progress.items()}
            upto = int(max(quorum_value([self.config], matches), self._chosen_upto))
            barrier = self._barrier(leader)
            if barrier is not None:
                upto = min(upto, barrier)
            upto = min(upto, leader.last_slot)
            if upto <= self._chosen_upto:
                return
            self._set_chosen(upto)
            if self._leader is not leader:
                return

    def _after_leader_commit(self, leader: _LeaderState) -> None:
        config = self.config
        if self._chosen_upto >= leader.ready_slot and leader.reads_unready:
            waiting, leader.reads_unready = leader.reads_unready, []
            for request_id in waiting:
                self._serve_read(leader, request_id)
        if self._barrier(leader) is None:
            if config.is_joint:
                final = config.finalized()
                self._append_entries(
                    leader, [LogEntry(leader.last_slot + 1, self._ballot, (), final)]
                )
            elif self.node_id not in config.voter_ids:
                log.info("node %s left the voters; stepping down", self.node_id)
                self._step_down()
                return
        # The barrier may have moved past the slot just chosen: send what it held back.
        for peer in self._peers():
            if peer not in leader.progress:
                leader.progress[peer] = Progress(next=self._chosen_upto + 1)
            self._replicate(leader, peer)
        self._flush_proposals(leader)

    # ------------------------------------------------------------------ heartbeats, leases, reads

    def _broadcast_heartbeat(self, leader: _LeaderState) -> None:
        leader.heartbeat_seq += 1
        seq = leader.heartbeat_seq
        leader.heartbeat_sent[seq] = self._now
        leader.heartbeat_ready_epoch = self._ready_epoch
        leader.heartbeat_sent.pop(seq - _HEARTBEAT_HISTORY, None)
        leader.next_heartbeat_at = self._now + self._options.heartbeat_interval
        for peer in self._peers():
            progress = leader.progress.setdefault(peer, Progress(next=self._chosen_upto + 1))
            # A live peer that made no progress since the last round lost something:
            # resend from what it holds. A silent one is only sent heartbeats.
            stalled = progress.match == progress.match_at_last_check
            if progress.responded and stalled and progress.match < leader.last_slot:
                progress.next = progress.match + 1
                self._replicate(leader, peer)
            progress.responded = False
            progress.match_at_last_check = progress.match
            self._send(peer, Heartbeat(self.node_id, self._ballot, self._chosen_upto, seq))

    def _on_heartbeat_ack(self, msg: HeartbeatAck) -> None:
        self._observe(msg.ballot)
        leader = self._leader
        if leader is None:
            return
        if not msg.ok:
            if msg.ballot > self._ballot:
                self._step_down()
            return
        progress = leader.progress.get(msg.sender)
        if msg.ballot != self._ballot or progress is None:
            return
        progress.acked_seq = max(progress.acked_seq, msg.seq)
        progress.responded = True
        sent_at = leader.heartbeat_sent.get(msg.seq)
        if sent_at is not None and msg.seq > leader.lease_floor_seq:
            progress.grant_from = max(progress.grant_from, sent_at)
        if msg.accepted_upto > progress.match:
            progress.match = msg.accepted_upto
            progress.next = max(progress.next, msg.accepted_upto + 1)
            self._advance_commit(leader)
            if self._leader is not leader:
                return
            self._replicate(leader, msg.sender)
        self._resolve_read_index(leader)

    def _lease_usable(self) -> bool:
        leader = self._leader
        return (
            leader is not None
            and leader.transfer_target is None  # rule 5
            and self._chosen_upto >= leader.ready_slot  # rule 4
        )

    def _lease_until(self) -> float:
        """Rule 2: from before the heartbeat was sent, minus the drift margin; the
        leader's own grant is unbounded (it stops reading the moment it steps down)."""
        leader = self._leader
        if leader is None:
            return NEVER
        length = self._options.lease_duration - self._options.lease_drift_margin
        expiries = {self.node_id: FOREVER}
        for peer, progress in leader.progress.items():
            if peer != self.node_id:
                expiries[peer] = progress.grant_from + length
        return quorum_value(self._quorum_configs(leader), expiries)

    def _serve_read(self, leader: _LeaderState, request_id: int) -> None:
        if self._lease_usable() and self._lease_until() > self._now:
            self._reads.append(ReadState(request_id, self._chosen_upto, True))
            return
        # Read-index: confirm leadership with a round that leaves after the read
        # arrived; a round still unsent (not yet taken by ready()) qualifies.
        if leader.heartbeat_ready_epoch != self._ready_epoch:
            self._broadcast_heartbeat(leader)
        leader.reads_waiting.append((request_id, self._chosen_upto, leader.heartbeat_seq))
        self._resolve_read_index(leader)

    def _resolve_read_index(self, leader: _LeaderState) -> None:
        if not leader.reads_waiting:
            return
        acked = {peer: float(p.acked_seq) for peer, p in leader.progress.items()}
        acked[self.node_id] = FOREVER
        confirmed = quorum_value(self._quorum_configs(leader), acked)
        still_waiting = []
        for request_id, read_index, seq in leader.reads_waiting:
            if seq <= confirmed:
                self._reads.append(ReadState(request_id, read_index, True))
            else:
                still_waiting.append((request_id, read_index, seq))
        leader.reads_waiting = still_waiting

    def _abort_transfer(self, leader: _LeaderState) -> None:
        log.info("node %s: transfer to %s timed out", self.node_id, leader.transfer_target)
        leader.transfer_target = None
        # Followers dropped their grants on TimeoutNow: only newer rounds count.
        leader.lease_floor_seq = leader.heartbeat_seq
        for progress in leader.progress.values():
            progress.grant_from = NEVER
