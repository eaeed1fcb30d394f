"""`dfs admin fsck [PATH] [--repair] [--verify]` and `dfs admin sessions [--evict ID]`:
the commands answered by the metadata leader alone.

fsck streams its progress (a bar on stderr) and then one report; exit 0 when
nothing is wrong or everything found was repaired, 1 when problems remain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.progress import TaskID
from rich.table import Table

from dfs.admin.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    AdminUsageError,
    Target,
    admin_channel,
    leader_addr,
    progress_bar,
)
from dfs.rpc import admin_pb2, admin_pb2_grpc, common_pb2

FSCK_TIMEOUT_S = 6 * 3600.0  # a verify pass reads every byte once
CALL_TIMEOUT_S = 30.0
USAGE = "fsck [PATH] [--repair] [--verify] | sessions [--evict ID]"


def _fsck_request(words: Sequence[str]) -> admin_pb2.FsckRequest:
    flags = {w for w in words if w.startswith("--")}
    paths = [w for w in words if not w.startswith("--")]
    if flags - {"--repair", "--verify"} or len(paths) > 1:
        raise AdminUsageError(f"bad fsck arguments: {' '.join(words)} ({USAGE})")
    return admin_pb2.FsckRequest(path=paths[0] if paths else "/",
                                 repair="--repair" in flags, verify="--verify" in flags)


def fsck(target: Target, words: Sequence[str], as_json: bool) -> int:
    request = _fsck_request(words)
    report: admin_pb2.FsckReport | None = None
    progress = progress_bar("", shown=not as_json)
    tasks: dict[str, TaskID] = {}
    with admin_channel(leader_addr(target), target.secret) as channel, progress:
        for update in admin_pb2_grpc.AdminStub(channel).Fsck(request, timeout=FSCK_TIMEOUT_S):
            if update.HasField("report"):
                report = update.report
                continue
            step = update.progress
            if step.phase not in tasks:
                tasks[step.phase] = progress.add_task(step.phase, total=step.total or None)
            progress.update(tasks[step.phase], completed=step.done, total=step.total or None)
    if report is None:
        raise AdminUsageError("fsck ended without a report")
    remaining = [f for f in report.findings if not f.repaired]
    if as_json:
        print(json.dumps(MessageToDict(report, preserving_proto_field_name=True,
                                       always_print_fields_with_no_presence=True)))
    else:
        _render(report, request)
    return EXIT_PROBLEM if remaining else EXIT_OK


def _render(report: admin_pb2.FsckReport, request: admin_pb2.FsckRequest) -> None:
    console = Console(highlight=False)
    console.print(f"fsck of {request.path or '/'} at slot {report.snapshot_slot}: "
                  f"{report.inodes} inodes ({report.directories} directories, "
                  f"{report.files} files), {report.chunks} chunks, {report.copies} copies"
                  + (", every copy verified" if request.verify else ""))
    if report.unreachable_servers:
        console.print("[yellow]data servers not listed (their copies count as absent): "
                      f"{', '.join(map(str, report.unreachable_servers))}[/]")
    if not report.findings:
        console.print("[bold green]no problems found[/]")
        return
    table = Table()
    for column in ("problem", "id", "detail", "fix"):
        table.add_column(column, justify="right" if column == "id" else "left")
    for f in report.findings:
        fix = ("[green]repaired[/]" if f.repaired else "repairable (--repair)"
               if f.repairable else "[red]not repairable[/]")
        table.add_row(f.problem, str(f.id), f.detail, fix)
    console.print(table)
    left = sum(1 for f in report.findings if not f.repaired)
    console.print(f"{len(report.findings)} problems, {left} remaining")


def sessions(target: Target, words: Sequence[str], as_json: bool) -> int:
    with admin_channel(leader_addr(target), target.secret) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        if len(words) == 2 and words[0] == "--evict":
            if not words[1].isdigit():
                raise AdminUsageError(f"--evict needs a session id, got {words[1]!r}")
            reply = stub.SessionEvict(admin_pb2.SessionEvictRequest(id=int(words[1])),
                                      timeout=CALL_TIMEOUT_S)
            print(json.dumps({"ok": reply.ok, "message": reply.message}) if as_json
                  else reply.message)
            return EXIT_OK if reply.ok else EXIT_PROBLEM
        if words:
            raise AdminUsageError(f"bad sessions arguments: {' '.join(words)} ({USAGE})")
        listing = stub.SessionList(common_pb2.Empty(), timeout=CALL_TIMEOUT_S)
    if as_json:
        print(json.dumps(MessageToDict(listing, preserving_proto_field_name=True,
                                       always_print_fields_with_no_presence=True)))
        return EXIT_OK
    table = Table(title=f"{len(listing.sessions)} sessions (timeout {listing.timeout_s:g} s)",
                  title_justify="left")
    for column in ("id", "client", "idle s", "open inodes", "chunk ranges"):
        table.add_column(column, justify="left" if column == "client" else "right")
    for s in listing.sessions:
        table.add_row(str(s.id), s.client or "-", f"{s.idle_s:.1f}", str(s.open_inodes),
                      str(s.chunk_ranges))
    Console(highlight=False).print(table)
    return EXIT_OK
