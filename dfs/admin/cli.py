"""`dfs admin`: operate a cluster through the admin and KV services.

Human tables by default, `--json` for scripts. Exit status: 0 healthy,
1 problems found, 2 usage or connection error (one line on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from dfs.admin.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    STATUS_TIMEOUT_S,
    AdminUsageError,
    Target,
    admin_channel,
    fetch_status,
    leader_addr,
    print_table,
)
from dfs.admin.data_cli import USAGE as DATA_USAGE
from dfs.admin.data_cli import data_command, rebalance_status, ring_command, scrub_command
from dfs.admin.fsck_cli import USAGE as LEADER_USAGE
from dfs.admin.fsck_cli import fsck, sessions
from dfs.admin.rebalance_cli import USAGE as REBALANCE_USAGE
from dfs.admin.rebalance_cli import rebalance
from dfs.admin.status_cli import status
from dfs.auth import SecretError, secret_from_flags, tls_from_args
from dfs.client.kv import KvClient
from dfs.client.retry import LeaderUnavailable, RetryPolicy
from dfs.rpc import admin_pb2, admin_pb2_grpc, common_pb2


def resolve_target(args: argparse.Namespace) -> Target:
    meta: list[str] = []
    secret_path = args.secret
    cluster: dict[str, Any] = {}
    if args.cluster:
        try:
            cluster = json.loads(Path(args.cluster).read_text())
        except (OSError, ValueError) as err:
            raise AdminUsageError(f"cannot read {args.cluster}: {err}") from err
        meta = [m["addr"] for m in cluster.get("meta", [])]
        secret_path = secret_path or cluster.get("secret")
    if args.meta:
        meta = [a.strip() for a in args.meta.split(",") if a.strip()]
    if not meta:
        raise AdminUsageError("give --meta HOST:PORT[,...] or --cluster DIR/cluster.json")
    try:
        # Without a secret the admin tool still talks to --insecure test clusters.
        tls = tls_from_args(args, cluster.get("tls"))
        secret = secret_from_flags(secret_path, insecure=not secret_path, tls=tls)
    except SecretError as err:
        raise AdminUsageError(str(err)) from err
    return Target(meta, secret)


def meta_status(target: Target, as_json: bool) -> int:
    addrs = list(target.meta_addrs)
    replies: dict[str, admin_pb2.StatusReply | None] = {}
    queue = list(addrs)
    while queue:  # members named by any replica are asked too
        addr = queue.pop(0)
        if addr in replies:
            continue
        reply = fetch_status(addr, target.secret)
        replies[addr] = reply
        if reply is not None:
            for member_addr in [*reply.meta.voters.values(), *reply.meta.learners.values()]:
                if member_addr not in replies and member_addr not in queue:
                    queue.append(member_addr)
    if all(r is None for r in replies.values()):
        print(f"dfs admin: no metadata server answered at {', '.join(addrs)}", file=sys.stderr)
        return EXIT_USAGE
    members: list[dict[str, object]] = []
    leaders = set()
    for addr, reply in replies.items():
        if reply is None:
            members.append(
                {
                    "id": None,
                    "addr": addr,
                    "role": "unreachable",
                    "ballot": None,
                    "chosen": None,
                    "applied": None,
                    "lease_ms": None,
                }
            )
            continue
        meta = reply.meta
        if meta.role == "leader":
            leaders.add(reply.id)
        members.append(
            {
                "id": reply.id,
                "addr": addr,
                "role": meta.role,
                "ballot": f"{meta.ballot_round}.{meta.ballot_node}",
                "chosen": meta.chosen,
                "applied": meta.applied,
                "lease_ms": meta.lease_ms,
            }
        )
    members.sort(key=lambda m: (m["id"] is None, str(m["id"]).zfill(10)))
    leader = max(leaders) if len(leaders) == 1 else None
    if as_json:
        print(json.dumps({"leader": leader, "members": members}))
    else:
        print(f"leader: {leader if leader is not None else 'none'}")
        print_table(["id", "address", "role", "ballot", "chosen", "applied", "lease ms"],
                    [[m["id"], m["addr"], m["role"], m["ballot"], m["chosen"], m["applied"],
                      m["lease_ms"]] for m in members])
    healthy = leader is not None and all(m["role"] != "unreachable" for m in members)
    return EXIT_OK if healthy else EXIT_PROBLEM


LEADER_ACTIONS = ("add", "remove", "transfer-leader")
CHANGE_ATTEMPTS = 10


def meta_change(target: Target, action: str, argument: str) -> int:
    """meta add ID=HOST:PORT | meta remove ID | meta transfer-leader ID, at the leader.
    Removing the leader hands leadership over first, then removes it."""
    node, _, addr = argument.partition("=")
    if not node.isdigit() or (action == "add") != bool(addr):
        raise AdminUsageError("meta add ID=HOST:PORT | meta remove ID | meta transfer-leader ID")
    reply = None
    for _ in range(CHANGE_ATTEMPTS):
        with admin_channel(leader_addr(target), target.secret) as channel:
            stub = admin_pb2_grpc.AdminStub(channel)
            if action == "add":
                reply = stub.MetaAdd(
                    admin_pb2.MembershipRequest(id=int(node), addr=addr), timeout=60
                )
            elif action == "remove":
                reply = stub.MetaRemove(admin_pb2.MembershipRequest(id=int(node)), timeout=60)
            else:
                reply = stub.MetaTransferLeader(
                    admin_pb2.TransferLeaderRequest(id=int(node)), timeout=10
                )
        print(reply.message)
        if reply.ok or not ("not the leader" in reply.message or "handed" in reply.message):
            break
        time.sleep(1.0)
    return EXIT_OK if reply is not None and reply.ok else EXIT_PROBLEM


def meta_snapshot(target: Target) -> int:
    """Ask the replicas for a snapshot now (each replica snapshots its own state)."""
    problems = 0
    for addr in target.meta_addrs:
        with admin_channel(addr, target.secret) as channel:
            try:
                reply = admin_pb2_grpc.AdminStub(channel).MetaSnapshot(
                    common_pb2.Empty(), timeout=STATUS_TIMEOUT_S
                )
            except grpc.RpcError as err:
                print(f"{addr}: unreachable ({err.code().name})")
                problems += 1
                continue
        print(f"{addr}: {reply.message}")
    return EXIT_PROBLEM if problems else EXIT_OK


async def kv_command(target: Target, words: list[str], as_json: bool) -> int:
    client = KvClient(
        target.meta_addrs, target.secret, RetryPolicy(deadline_s=15), client_name="dfs-admin"
    )
    try:
        await client.open()
        verb, *rest = words
        if verb == "put" and len(rest) == 2:
            await client.put(rest[0].encode(), rest[1].encode())
            result: dict[str, object] = {"ok": True}
        elif verb == "get" and len(rest) == 1:
            value = await client.get(rest[0].encode())
            result = {
                "found": value is not None,
                "value": value.decode(errors="replace") if value is not None else None,
            }
        elif verb == "cas" and len(rest) == 3:
            swapped, found = await client.cas(rest[0].encode(), rest[1].encode(), rest[2].encode())
            result = {
                "swapped": swapped,
                "value": found.decode(errors="replace") if found is not None else None,
            }
        else:
            raise AdminUsageError("kv put KEY VALUE | kv get KEY | kv cas KEY OLD NEW")
    finally:
        await client.close()
    if as_json:
        print(json.dumps(result))
    elif verb == "get":
        if not result["found"]:
            print("(not found)", file=sys.stderr)
            return EXIT_PROBLEM
        print(result["value"])
    elif verb == "cas" and not result["swapped"]:
        print(f"not swapped; current value: {result['value']}", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


USAGE = (
    "status | meta status | meta snapshot | meta add ID=HOST:PORT | meta remove ID | "
    "meta transfer-leader ID | kv put KEY VALUE | kv get KEY | kv cas KEY OLD NEW | "
    + DATA_USAGE + " | " + REBALANCE_USAGE + " | " + LEADER_USAGE
)
DATA_COMMANDS = {"data": data_command, "ring": ring_command, "scrub": scrub_command}


def run(args: argparse.Namespace) -> int:
    words: Sequence[str] = [w for w in args.action if w != "--json"]
    as_json = args.json or "--json" in args.action
    try:
        if not words:
            raise AdminUsageError(f"what to do? {USAGE}")
        target = resolve_target(args)
        if list(words[:2]) == ["meta", "status"] and len(words) == 2:
            return meta_status(target, as_json)
        if list(words) == ["meta", "snapshot"]:
            return meta_snapshot(target)
        if len(words) == 3 and words[0] == "meta" and words[1] in LEADER_ACTIONS:
            return meta_change(target, words[1], words[2])
        if words[0] == "kv" and len(words) > 1:
            return asyncio.run(kv_command(target, list(words[1:]), as_json))
        if words[0] in DATA_COMMANDS:
            return DATA_COMMANDS[words[0]](target, words[1:], as_json)
        if list(words) == ["rebalance", "status"]:
            return rebalance_status(target, as_json)
        if words[0] == "rebalance":
            return rebalance(target, words[1:], as_json)
        if list(words) == ["status"]:
            return status(target, as_json)
        if words[0] == "fsck":
            return fsck(target, words[1:], as_json)
        if words[0] == "sessions":
            return sessions(target, words[1:], as_json)
        raise AdminUsageError(f"unknown or not yet available: {' '.join(words)} ({USAGE})")
    except AdminUsageError as err:
        print(f"dfs admin: {err}", file=sys.stderr)
        return EXIT_USAGE
    except LeaderUnavailable as err:
        print(f"dfs admin: {err}", file=sys.stderr)
        return EXIT_USAGE
    except grpc.RpcError as err:
        code = err.code()
        detail = err.details()
        print(f"dfs admin: {code.name}: {detail}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        print(f"dfs admin: {err.strerror or err}", file=sys.stderr)
        return EXIT_PROBLEM
