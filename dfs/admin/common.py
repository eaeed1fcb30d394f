"""What every `dfs admin` command shares: exit codes, the usage error, the target
cluster, a server's status and the metadata leader's address."""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

import grpc
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dfs.auth import ClusterSecret, sync_channel
from dfs.rpc import admin_pb2, admin_pb2_grpc

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2
STATUS_TIMEOUT_S = 2.0
# An operator's command waits for a slow connection (a TLS handshake on a busy
# server) until its deadline, instead of failing on the first attempt.
WAIT_FOR_READY = [("grpc.service_config", json.dumps(
    {"methodConfig": [{"name": [{}], "waitForReady": True}]}))]


class AdminUsageError(Exception):
    """Bad arguments or an unusable cluster description."""


@dataclass
class Target:
    meta_addrs: list[str]
    secret: ClusterSecret | None


def admin_channel(addr: str, secret: ClusterSecret | None) -> grpc.Channel:
    return sync_channel(addr, secret, WAIT_FOR_READY)


def fetch_status(addr: str, secret: ClusterSecret | None) -> admin_pb2.StatusReply | None:
    with admin_channel(addr, secret) as channel:
        try:
            reply: admin_pb2.StatusReply = admin_pb2_grpc.AdminStub(channel).Status(
                admin_pb2.StatusRequest(), timeout=STATUS_TIMEOUT_S
            )
            return reply
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise AdminUsageError(f"{addr}: refused: wrong or missing --secret") from err
            return None


def leader_addr(target: Target) -> str:
    for addr in target.meta_addrs:
        status = fetch_status(addr, target.secret)
        if status is None:
            continue
        if status.meta.role == "leader":
            return addr
        leader = status.meta.voters.get(status.meta.leader_id)
        if leader:
            return leader
    raise AdminUsageError("no metadata leader found")


def progress_bar(unit: str, shown: bool = True) -> Progress:
    """A progress bar on stderr (so --json output stays clean), only on a terminal;
    each task's description names what it counts."""
    return Progress(TextColumn("{task.description:<10}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total} " + unit), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True,
                    disable=not shown or not sys.stderr.isatty())


def print_table(columns: Sequence[str], rows: Iterable[Sequence[object]],
                title: str | None = None, left: Collection[str] = ("address", "addr", "state",
                                                                    "role", "domain")) -> None:
    """A human table on stdout: numbers right-aligned, the `left` columns left."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    Console(highlight=False).print(table)
