"""`dfs admin data|ring|scrub|rebalance`: the data servers' lifecycle from the command
line. Changes and figures go to the metadata leader; scrubs go to each data server
of the ring. Human tables by default, --json for scripts; exit 0 healthy or done,
1 problems found or refused, 2 usage or connection error (raised as AdminUsageError).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from dfs.admin.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    AdminUsageError,
    Target,
    admin_channel,
    fetch_status,
    leader_addr,
    print_table,
    progress_bar,
)
from dfs.rpc import admin_pb2, admin_pb2_grpc, common_pb2

CALL_TIMEOUT_S = 30.0
# A server silent longer than this is shown as a problem (the leader marks it down at 5 s).
SILENT_S = 5.0
STATE_NAMES = {1: "up", 2: "down", 3: "out", 4: "draining"}

USAGE = (
    "data list | data out ID | data drain ID | data remove ID | data weight ID W | "
    "ring show | ring plan add ID=HOST:PORT [W] | ring plan remove|drain|out ID | "
    "ring plan weight ID W | scrub start [MB/S] [--wait S] | scrub status | rebalance status"
)


def _at_leader(target: Target, call: Callable[[admin_pb2_grpc.AdminStub], Any]) -> Any:
    with admin_channel(leader_addr(target), target.secret) as channel:
        return call(admin_pb2_grpc.AdminStub(channel))


def _number(word: str, what: str) -> int:
    if not word.isdigit() or int(word) == 0:
        raise AdminUsageError(f"{what} must be a positive integer, got {word!r} ({USAGE})")
    return int(word)


def _as_dict(message: Any) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True,
                         always_print_fields_with_no_presence=True)


# -- data ---------------------------------------------------------------------------------


def data_command(target: Target, words: Sequence[str], as_json: bool) -> int:
    if list(words) == ["list"]:
        return data_list(target, as_json)
    changes = {"out": "DataOut", "drain": "DataDrain", "remove": "DataRemove"}
    if len(words) == 2 and words[0] in changes:
        request = admin_pb2.DataMemberRequest(id=_number(words[1], "ID"))
        method = changes[words[0]]
    elif len(words) == 3 and words[0] == "weight":
        request = admin_pb2.DataMemberRequest(id=_number(words[1], "ID"),
                                              weight=_number(words[2], "W"))
        method = "DataWeight"
    else:
        raise AdminUsageError(f"unknown data command: {' '.join(words)} ({USAGE})")
    reply: admin_pb2.AdminReply = _at_leader(
        target, lambda stub: getattr(stub, method)(request, timeout=CALL_TIMEOUT_S))
    print(json.dumps({"ok": reply.ok, "message": reply.message}) if as_json else reply.message)
    return EXIT_OK if reply.ok else EXIT_PROBLEM


def fetch_data_list(target: Target) -> admin_pb2.DataListReply:
    reply: admin_pb2.DataListReply = _at_leader(
        target, lambda stub: stub.DataList(common_pb2.Empty(), timeout=CALL_TIMEOUT_S))
    return reply


def data_list(target: Target, as_json: bool) -> int:
    listing = fetch_data_list(target)
    healthy = listing.under_replicated == 0 and listing.lost == 0 and all(
        s.state in ("up", "draining") and 0 <= s.heard_s_ago < SILENT_S
        for s in listing.servers
        if s.state != "out"
    )
    if as_json:
        print(json.dumps({**_as_dict(listing), "healthy": healthy}))
        return EXIT_OK if healthy else EXIT_PROBLEM
    print(f"ring epoch {listing.ring_epoch}, R = {listing.replicas}, "
          f"{listing.live_chunks} live chunks, {listing.under_replicated} under-replicated, "
          f"{listing.lost} lost, {listing.misplaced} misplaced copies")
    print_table(["id", "address", "state", "weight", "used MB", "chunks", "under", "lost",
                 "misplaced", "pass", "heard"],
                [[s.id, s.addr, s.state, s.weight, f"{s.used / 1e6:.1f}", s.chunks,
                  s.under_replicated, s.lost, s.misplaced, s.pass_epoch,
                  "never" if s.heard_s_ago < 0 else f"{s.heard_s_ago:.1f}s"]
                 for s in listing.servers])
    return EXIT_OK if healthy else EXIT_PROBLEM


# -- ring ---------------------------------------------------------------------------------


def ring_command(target: Target, words: Sequence[str], as_json: bool) -> int:
    if list(words) == ["show"]:
        return ring_show(target, as_json)
    if words and words[0] == "plan":
        return ring_plan(target, plan_request(words[1:]), as_json)
    raise AdminUsageError(f"unknown ring command: {' '.join(words)} ({USAGE})")


def ring_show(target: Target, as_json: bool) -> int:
    ring: common_pb2.Ring = _at_leader(
        target, lambda stub: stub.RingShow(common_pb2.Empty(), timeout=CALL_TIMEOUT_S))
    if as_json:
        print(json.dumps(_as_dict(ring)))
        return EXIT_OK
    print(f"epoch {ring.epoch}, R = {ring.replicas}, min_replicas = {ring.min_replicas}, "
          f"{ring.vnodes_per_weight} vnodes per weight")
    print_table(["id", "address", "state", "weight", "domain"],
                [[m.id, m.addr, STATE_NAMES.get(m.state, "?"), m.weight, m.domain or None]
                 for m in ring.members])
    return EXIT_OK


def plan_request(words: Sequence[str]) -> admin_pb2.RingPlanRequest:
    """add ID=HOST:PORT [W] | remove|drain|out ID | weight ID W"""
    if len(words) in (2, 3) and words[0] == "add":
        member, _, addr = words[1].partition("=")
        if ":" not in addr:
            raise AdminUsageError(f"ring plan add needs ID=HOST:PORT ({USAGE})")
        weight = _number(words[2], "W") if len(words) == 3 else 1
        return admin_pb2.RingPlanRequest(action="add", id=_number(member, "ID"), addr=addr,
                                         weight=weight)
    if len(words) == 2 and words[0] in ("remove", "drain", "out"):
        return admin_pb2.RingPlanRequest(action=words[0], id=_number(words[1], "ID"))
    if len(words) == 3 and words[0] == "weight":
        return admin_pb2.RingPlanRequest(action="weight", id=_number(words[1], "ID"),
                                         weight=_number(words[2], "W"))
    raise AdminUsageError(f"unknown ring plan: {' '.join(words)} ({USAGE})")


def ring_plan(target: Target, request: admin_pb2.RingPlanRequest, as_json: bool) -> int:
    try:
        plan: admin_pb2.RingPlanReply = _at_leader(
            target, lambda stub: stub.RingPlan(request, timeout=CALL_TIMEOUT_S * 4))
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise AdminUsageError(str(err.details())) from err
        raise
    fraction = plan.copies_moved / plan.copies_before if plan.copies_before else 0.0
    if as_json:
        print(json.dumps({**_as_dict(plan), "moved_fraction": fraction}))
        return EXIT_OK
    print(f"from epoch {plan.from_epoch}: {plan.chunks_moved} of {plan.chunks} live chunks "
          f"change homes; {plan.copies_moved} of {plan.copies_before} copies "
          f"({fraction:.1%}), {plan.bytes_moved / 1e6:.1f} MB of "
          f"{plan.bytes_total / 1e6:.1f} MB would move")
    print_table(["id", "gains", "gains MB", "drops"],
                [[m.id, m.gained, f"{m.gained_bytes / 1e6:.1f}", m.dropped] for m in plan.members])
    return EXIT_OK


# -- scrub and rebalance ------------------------------------------------------------------


def _data_addrs(target: Target) -> list[tuple[int, str]]:
    ring: common_pb2.Ring = _at_leader(
        target, lambda stub: stub.RingShow(common_pb2.Empty(), timeout=CALL_TIMEOUT_S))
    return [(m.id, m.addr) for m in ring.members if m.state != 3]  # 3 = out


def scrub_command(target: Target, words: Sequence[str], as_json: bool) -> int:
    wait_s: float | None = None
    if "--wait" in words:
        at = list(words).index("--wait")
        try:
            wait_s = float(words[at + 1])
        except (IndexError, ValueError) as err:
            raise AdminUsageError("scrub start --wait needs seconds") from err
        words = [*words[:at], *words[at + 2:]]
    if words and words[0] == "start" and len(words) <= 2:
        try:
            rate = float(words[1]) if len(words) == 2 else 0.0
        except ValueError as err:
            raise AdminUsageError(f"scrub start [MB/S]: not a rate: {words[1]!r}") from err
        if rate < 0:
            raise AdminUsageError("scrub rate must be >= 0 MB/s")
        passes_before = {i: s.data.scrub_passes for i, _, s in _data_statuses(target) if s}
        code = scrub_start(target, rate, as_json)
        if wait_s is None or code != EXIT_OK:
            return code
        return follow_scrub(target, passes_before, wait_s)
    if list(words) == ["status"]:
        return scrub_status(target, as_json)
    raise AdminUsageError(f"unknown scrub command: {' '.join(words)} ({USAGE})")


def scrub_start(target: Target, rate_mbps: float, as_json: bool) -> int:
    results: list[dict[str, object]] = []
    for server_id, addr in _data_addrs(target):
        with admin_channel(addr, target.secret) as channel:
            try:
                reply = admin_pb2_grpc.AdminStub(channel).ScrubStart(
                    admin_pb2.ScrubRequest(rate_mbps=rate_mbps), timeout=CALL_TIMEOUT_S)
                results.append({"id": server_id, "addr": addr, "ok": reply.ok,
                                "message": reply.message})
            except grpc.RpcError as err:
                results.append({"id": server_id, "addr": addr, "ok": False,
                                "message": f"unreachable ({err.code().name})"})
    if as_json:
        print(json.dumps({"servers": results}))
    else:
        for r in results:
            print(f"{r['id']:>4}  {r['addr']:<22} {r['message']}")
    return EXIT_OK if all(r["ok"] for r in results) else EXIT_PROBLEM


def follow_scrub(target: Target, passes_before: dict[int, int], wait_s: float) -> int:
    """A progress bar over every server's pass, until each has finished one more."""
    deadline = time.monotonic() + wait_s
    progress = progress_bar("chunks")
    with progress:
        task = progress.add_task("scrub", total=None)
        while True:
            statuses = [s for _, _, s in _data_statuses(target) if s is not None]
            finished = [s for s in statuses
                        if s.data.scrub_passes > passes_before.get(s.id, 0)]
            progress.update(task, total=sum(s.data.chunks for s in statuses) or None,
                            completed=sum(s.data.chunks if s in finished else s.data.scrub_chunks
                                          for s in statuses))
            if len(finished) == len(statuses) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    done = len(finished) == len(statuses)
    print("scrub pass finished on every server" if done else
          f"scrub still running after {wait_s:g} s (dfs admin scrub status)", file=sys.stderr)
    return EXIT_OK if done else EXIT_PROBLEM


def _data_statuses(target: Target) -> list[tuple[int, str, admin_pb2.StatusReply | None]]:
    return [(server_id, addr, fetch_status(addr, target.secret))
            for server_id, addr in _data_addrs(target)]


def scrub_status(target: Target, as_json: bool) -> int:
    rows: list[dict[str, Any]] = []
    for server_id, addr, status in _data_statuses(target):
        row: dict[str, Any] = {"id": server_id, "addr": addr, "reachable": status is not None}
        if status is not None:
            d = status.data
            row.update(running=d.scrub_running, passes=d.scrub_passes, chunks=d.scrub_chunks,
                       bytes=d.scrub_bytes, bad=d.scrub_bad, rate=d.scrub_rate,
                       last_pass=d.scrub_last_pass, held=d.chunks, repaired=d.repaired)
        rows.append(row)
    problems = any(not r["reachable"] or r["bad"] > r["repaired"] for r in rows)
    if as_json:
        print(json.dumps({"servers": rows}))
        return EXIT_PROBLEM if problems else EXIT_OK
    print_table(["id", "address", "state", "passes", "checked", "MB", "bad", "repaired", "MB/s"],
                [[r["id"], r["addr"], "unreachable"] + [None] * 6 if not r["reachable"] else
                 [r["id"], r["addr"], "running" if r["running"] else "idle", r["passes"],
                  f"{r['chunks']}/{r['held']}", f"{r['bytes'] / 1e6:.1f}", r["bad"],
                  r["repaired"], f"{r['rate'] / 1e6:.1f}"] for r in rows])
    return EXIT_PROBLEM if problems else EXIT_OK


def rebalance_status(target: Target, as_json: bool) -> int:
    listing = fetch_data_list(target)
    moved = {server_id: status for server_id, _, status in _data_statuses(target)}
    rows: list[dict[str, Any]] = []
    for s in listing.servers:
        status = moved.get(s.id)
        rows.append({"id": s.id, "addr": s.addr, "state": s.state, "misplaced": s.misplaced,
                     "live_held": s.live_held, "pass_epoch": s.pass_epoch,
                     "pushed": status.data.pushed if status else None,
                     "pushed_bytes": status.data.pushed_bytes if status else None,
                     "dropped": status.data.dropped if status else None})
    done = listing.settled and listing.misplaced == 0 and listing.under_replicated == 0
    if as_json:
        print(json.dumps({"ring_epoch": listing.ring_epoch, "settled": listing.settled,
                          "misplaced": listing.misplaced,
                          "under_replicated": listing.under_replicated, "done": done,
                          "servers": rows}))
        return EXIT_OK if done else EXIT_PROBLEM
    print(f"ring epoch {listing.ring_epoch}: "
          + ("balanced" if done else
             f"moving ({listing.misplaced} copies to drop, {listing.under_replicated} chunks "
             f"under-replicated{'' if listing.settled else ', passes at this epoch pending'})"))
    print_table(["id", "state", "live held", "misplaced", "pass", "pushed", "pushed MB",
                 "dropped"],
                [[r["id"], r["state"], r["live_held"], r["misplaced"], r["pass_epoch"],
                  r["pushed"], None if r["pushed_bytes"] is None
                  else f"{r['pushed_bytes'] / 1e6:.1f}", r["dropped"]] for r in rows])
    return EXIT_OK if done else EXIT_PROBLEM
