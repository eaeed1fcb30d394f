"""`dfs admin rebalance [--dry-run] [--rate MB/S] [--wait S]`: start an anti-entropy
pass on every data server now (optionally at a new push rate) and follow it with
a progress bar until nothing is left to move; `--dry-run` only says what the
pass would move. Exit 0 when the cluster is balanced, 1 when work remains."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import grpc

from dfs.admin.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    AdminUsageError,
    Target,
    admin_channel,
    progress_bar,
)
from dfs.admin.data_cli import fetch_data_list
from dfs.rpc import admin_pb2, admin_pb2_grpc

CALL_TIMEOUT_S = 30.0
POLL_S = 1.0
USAGE = "rebalance [--dry-run] [--rate MB/S] [--wait S]"


def _options(words: Sequence[str]) -> tuple[bool, float, float]:
    dry_run, rate, wait = False, 0.0, 600.0
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word == "--dry-run":
            dry_run = True
        elif word in ("--rate", "--wait") and rest:
            try:
                value = float(rest.pop(0))
            except ValueError as err:
                raise AdminUsageError(f"{word} needs a number ({USAGE})") from err
            if value < 0:
                raise AdminUsageError(f"{word} must be >= 0 ({USAGE})")
            rate, wait = (value, wait) if word == "--rate" else (rate, value)
        else:
            raise AdminUsageError(f"bad rebalance arguments: {' '.join(words)} ({USAGE})")
    return dry_run, rate, wait


def _remaining(listing: admin_pb2.DataListReply) -> int:
    return int(listing.misplaced + listing.under_replicated)


def rebalance(target: Target, words: Sequence[str], as_json: bool) -> int:
    dry_run, rate, wait_s = _options(words)
    listing = fetch_data_list(target)
    if dry_run:
        plan = {"ring_epoch": listing.ring_epoch, "settled": listing.settled,
                "copies_to_drop": listing.misplaced,
                "chunks_to_copy": listing.under_replicated,
                "servers": [{"id": s.id, "state": s.state, "misplaced": s.misplaced,
                             "under_replicated": s.under_replicated} for s in listing.servers]}
        if as_json:
            print(json.dumps(plan))
        else:
            print(f"ring epoch {listing.ring_epoch}: the next pass copies "
                  f"{listing.under_replicated} under-replicated chunks to their homes and "
                  f"drops {listing.misplaced} copies no home needs"
                  + ("" if listing.settled else " (some servers have not finished a pass "
                     "at this epoch: figures may grow)"))
        return EXIT_OK if _remaining(listing) == 0 and listing.settled else EXIT_PROBLEM
    started = _start_passes(target, listing, rate)
    if as_json:
        print(json.dumps({"servers": started}))
        return EXIT_OK if all(s["ok"] for s in started) else EXIT_PROBLEM
    for s in started:
        print(f"{s['id']:>4}  {s['message']}")
    return _follow(target, _remaining(listing), wait_s)


def _start_passes(target: Target, listing: admin_pb2.DataListReply,
                  rate: float) -> list[dict[str, object]]:
    started: list[dict[str, object]] = []
    for server in listing.servers:
        if server.state == "out":
            continue
        with admin_channel(server.addr, target.secret) as channel:
            try:
                reply = admin_pb2_grpc.AdminStub(channel).Rebalance(
                    admin_pb2.RebalanceRequest(rate_mbps=rate), timeout=CALL_TIMEOUT_S)
                started.append({"id": server.id, "ok": reply.ok, "message": reply.message})
            except grpc.RpcError as err:
                started.append({"id": server.id, "ok": False,
                                "message": f"unreachable ({err.code().name})"})
    return started


def _follow(target: Target, at_start: int, wait_s: float) -> int:
    """Poll the leader's figures until nothing is left to move (or wait_s passes)."""
    deadline = time.monotonic() + wait_s
    progress = progress_bar("copies")
    with progress:
        task = progress.add_task("rebalance", total=max(at_start, 1))
        while True:
            listing = fetch_data_list(target)
            left = _remaining(listing)
            total = max(at_start, left, 1)
            progress.update(task, total=total, completed=total - left)
            if (left == 0 and listing.settled) or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
    done = left == 0 and listing.settled
    print("balanced" if done else f"still moving after {wait_s:g} s: {left} copies left "
          "(dfs admin rebalance status)")
    return EXIT_OK if done else EXIT_PROBLEM
