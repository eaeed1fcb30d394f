#!/usr/bin/env python3
"""One benchmark run of a local directory, the passthrough mount and dfs, side by side.

Rounds are interleaved (every target once per round, the order rotating), so a
slow minute of the machine hits all targets alike. Prints medians, spreads, ratios
to the passthrough and the local directory, and the per-operation floor of durable
sequential operations, and dfs against issue 20's targets; --json for machines; a PNG
of the ratios with matplotlib; py-spy profiles of dfs per workload with --profile.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from aggregate import DFS, LOCAL, PASSTHROUGH
from comparison import Comparison
from dfs_target import DfsCluster, Unavailable, default_dfs_cmd, start_dfs
from figures import WORKLOAD_NAMES, figures_of
from machine import describe
from mounts import MountError, PassthroughMount
from plot import PLOT_NOTE_PREFIX, plot_ratios
from profiled import profile_dfs
from report import markdown, text
from sizes import SIZES

FS_SCRIPT = Path(__file__).resolve().parent / "fs.py"
REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = Path(".venv/bin/python")
REEXEC_MARKER = "DFS_BENCH_REEXECUTED"
DEFAULT_ROUNDS = 3
QUICK_ROUNDS = 1  # a smoke run: every code path once, in `make test`'s budget
# Bounds of one fs.py run; a run that takes longer is killed and reported.
FS_RUN_TIMEOUT_S = {"quick": 300.0, "medium": 3600.0, "full": 3600.0}
ROUND_TRIP_CALLS = {"quick": 200, "medium": 2000, "full": 2000}
FSYNC_APPENDS = {"quick": 20, "medium": 200, "full": 200}
EXIT_OK = 0
EXIT_INCOMPLETE = 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark a local directory, a pyfuse3 passthrough mount and dfs "
        "(`dfs up`: 3 metadata, 4 data servers, R = 3) in interleaved rounds. "
        "Run as root, so caches can be dropped before read phases.",
    )
    parser.add_argument("--rounds", type=int,
                        help=f"interleaved rounds (default {DEFAULT_ROUNDS}, {QUICK_ROUNDS} with "
                        "--quick; use >= 3 for meaningful spreads)")
    parser.add_argument("--sizes", choices=list(SIZES), default="full",
                        help="workload sizes (default full, issue 20's; medium keeps a "
                        "3-round run with dfs near half an hour on 2 cores)")
    parser.add_argument("--quick", action="store_true",
                        help=f"--sizes quick and {QUICK_ROUNDS} round: a smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--markdown", action="store_true",
                        help="print the tables as Markdown (for docs) instead of plain text")
    parser.add_argument("--only", metavar="NAME,...", default=",".join(WORKLOAD_NAMES),
                        help=f"workloads (default all: {','.join(WORKLOAD_NAMES)})")
    parser.add_argument("--workdir", type=Path,
                        help="where targets live and results are kept (default: a new "
                        "temporary directory); the local target is a directory in it")
    parser.add_argument("--no-dfs", action="store_true", help="leave dfs out")
    parser.add_argument("--dfs-cmd", default=None, metavar="CMD",
                        help="how to run dfs (default: the `dfs` beside this Python)")
    parser.add_argument("--dfs-drop-cache-cmd", metavar="CMD",
                        help="shell command that empties the dfs client's own caches (e.g. a "
                        "remount); run before every read phase on dfs")
    parser.add_argument("--entry-timeout", type=float, default=1.0, metavar="S",
                        help="passthrough entry timeout (default 1, as dfs)")
    parser.add_argument("--attr-timeout", type=float, default=1.0, metavar="S",
                        help="passthrough attribute timeout (default 1, as dfs)")
    parser.add_argument("-o", dest="fuse_options", action="append", default=[], metavar="OPT",
                        help="extra FUSE option of the passthrough mount (repeatable)")
    parser.add_argument("--writeback-cache", action="store_true",
                        help="mount the passthrough with the kernel's write-back cache")
    parser.add_argument("--no-drop", action="store_true",
                        help="do not drop the kernel page cache (when not root)")
    parser.add_argument("--plot", type=Path, help="PNG of the ratios (default WORKDIR/ratios.png)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="after the rounds, run each workload once more on dfs with py-spy "
                        "recording the mount and every server; summaries and flamegraphs in DIR")
    parser.add_argument("--report", type=Path, metavar="RESULTS.json",
                        help="measure nothing: print the report (and plot) of an earlier run")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = "quick"
    if args.rounds is None:
        args.rounds = QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    chosen = {name.strip() for name in args.only.split(",") if name.strip()}
    if not chosen or chosen - set(WORKLOAD_NAMES):
        parser.error(f"--only: choose from {','.join(WORKLOAD_NAMES)}")
    args.only = [name for name in WORKLOAD_NAMES if name in chosen]
    return args


STARTED = time.monotonic()


def progress(message: str) -> None:
    print(f"[compare {time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through the finally blocks that unmount and stop servers.
    sys.exit(128 + signum)


class Run:
    """One compare run: its targets, what they measured, and their cleanup."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.size_kind: str = args.sizes
        self.status: dict[str, str] = {}
        self.dirs: dict[str, Path] = {}
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.errors: dict[str, list[str]] = {}
        self.notes: list[str] = []
        self.round_trips: list[float] = []
        self.fsyncs: list[float] = []
        self.loads: list[float] = []
        self.passthrough = PassthroughMount(
            workdir / "passthrough-backing", workdir / "passthrough-mnt",
            workdir / "passthrough.log", self._passthrough_args(),
        )
        self.dfs: DfsCluster | None = None

    def _passthrough_args(self) -> list[str]:
        extra = ["--entry-timeout", str(self.args.entry_timeout),
                 "--attr-timeout", str(self.args.attr_timeout)]
        for option in self.args.fuse_options:
            extra += ["-o", option]
        return extra + (["--writeback-cache"] if self.args.writeback_cache else [])

    # ------------------------------------------------------------- targets

    def start_targets(self) -> None:
        local = self.workdir / "local"
        local.mkdir(exist_ok=True)
        self._measured(LOCAL, local)
        progress("mounting the passthrough")
        try:
            self.passthrough.start()
            self._measured(PASSTHROUGH, self.passthrough.mountpoint)
        except MountError as err:
            self.status[PASSTHROUGH] = f"failed to mount: {err}"
        if self.args.no_dfs:
            self.status[DFS] = "left out (--no-dfs)"
            return
        progress("starting dfs: dfs up (3 metadata, 4 data, R = 3)")
        dfs_cmd = shlex.split(self.args.dfs_cmd) if self.args.dfs_cmd else default_dfs_cmd()
        started = start_dfs(dfs_cmd, self.workdir / "dfs", self.workdir / "dfs-up.log")
        if isinstance(started, Unavailable):
            self.status[DFS] = started.reason
            progress(f"dfs: {started.reason}")
        else:
            self.dfs = started
            self._measured(DFS, started.mountpoint)

    def _measured(self, name: str, directory: Path) -> None:
        self.status[name] = "measured"
        self.dirs[name] = directory
        self.samples[name] = {}

    def stop_targets(self) -> None:
        if self.dfs is not None:
            progress("stopping dfs: dfs down")
            self.dfs.stop()
        self.passthrough.stop()
        for name in ("local", "passthrough-backing", "dfs"):
            shutil.rmtree(self.workdir / name, ignore_errors=True)

    # ---------------------------------------------------------------- rounds

    def run_rounds(self) -> None:
        targets = list(self.dirs)
        for index in range(self.args.rounds):
            # Rotate the order so no target always runs first (or last).
            shift = index % len(targets)
            for name in targets[shift:] + targets[:shift]:
                self._run_fs(name, index)
                self.loads.append(os.getloadavg()[0])
            self._measure_floor(index)

    def _run_fs(self, name: str, index: int) -> None:
        label = f"round {index + 1}/{self.args.rounds} {name}"
        result = self._fs_json(name, label, self.args.only)
        if result is None:
            return
        for figure, measured in result["figures"].items():
            self.samples[name].setdefault(figure, []).append(float(measured["value"]))
            if measured["note"]:
                self.notes.append(f"{label} {figure}: {measured['note']}")
        for workload, message in result["errors"].items():
            self.errors.setdefault(name, []).append(f"{label} {workload}: {message}")
        if not result["caches"]["kernel_dropped"] and not self.args.no_drop:
            self.notes.append(f"{label}: caches not dropped: {result['caches']['kernel_problem']}")

    def _fs_json(self, name: str, label: str, only: list[str]) -> dict[str, Any] | None:
        """One fs.py run on target `name`; its JSON, or None (recorded as an error)."""
        progress(f"{label}: fs.py --sizes {self.size_kind} on {name}")
        argv = [sys.executable, str(FS_SCRIPT), str(self.dirs[name]), "--json",
                "--label", label, "--only", ",".join(only), "--sizes", self.size_kind]
        argv += ["--no-drop"] if self.args.no_drop else []
        if name == DFS and self.args.dfs_drop_cache_cmd:
            argv += ["--drop-cache-cmd", self.args.dfs_drop_cache_cmd]
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, check=False,
                                  timeout=FS_RUN_TIMEOUT_S[self.size_kind])
            result: dict[str, Any] = json.loads(done.stdout)
        except subprocess.TimeoutExpired:
            self.errors.setdefault(name, []).append(f"{label}: fs.py timed out")
            return None
        except json.JSONDecodeError:
            self.errors.setdefault(name, []).append(f"{label}: fs.py exited {done.returncode}")
            return None
        return result

    def profile(self) -> None:
        """The profiled pass over dfs (--profile), after the measured rounds."""
        if self.args.profile is None:
            return
        if self.dfs is None:
            self.notes.append("profile skipped: dfs was not running")
            return
        self.notes.append(profile_dfs(
            lambda only: self._fs_json(DFS, f"profile {only[0]}", only),
            self.dfs.processes(), self.args.only, self.args.profile.resolve(), progress,
        ))

    def _measure_floor(self, index: int) -> None:
        import floor  # imports dfs and grpc: only the floor needs them

        kind = self.size_kind
        progress(f"round {index + 1}/{self.args.rounds}: gRPC round trip and fsync")
        self.round_trips.append(floor.grpc_round_trip_s(ROUND_TRIP_CALLS[kind]))
        self.fsyncs.append(floor.fsync_s(self.dirs[LOCAL], FSYNC_APPENDS[kind]))

    def comparison(self, command: str) -> Comparison:
        return Comparison(
            machine=describe(self.workdir), command=command, rounds=self.args.rounds,
            size_set=self.size_kind, status=self.status, targets=list(self.dirs),
            figure_names=figures_of(self.args.only), samples=self.samples,
            round_trip_samples=self.round_trips, fsync_samples=self.fsyncs,
            errors=self.errors, notes=self.notes, load_samples=self.loads,
        )


def _reexec_in_venv_if_needed() -> None:
    """`python scripts/bench/compare.py` on a checkout after `make up`: use its .venv,
    which holds pyfuse3 and grpc, when this interpreter lacks them."""
    try:
        import grpc  # noqa: F401
        import pyfuse3  # noqa: F401
    except ImportError:
        venv_python = REPO_ROOT / VENV_PYTHON
        if venv_python.exists() and REEXEC_MARKER not in os.environ:
            os.environ[REEXEC_MARKER] = "1"  # once: a venv without them fails plainly
            os.execv(venv_python, [str(venv_python), __file__, *sys.argv[1:]])
        raise


def _ensure_dfs_importable() -> None:
    """The floor uses dfs's gRPC code; a fresh clone run without installing still works."""
    try:
        import dfs  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT))


def render_output(comparison: Comparison, args: argparse.Namespace) -> str:
    if args.json:
        return json.dumps(comparison.to_json(), indent=2)
    return markdown(comparison) if args.markdown else text(comparison)


def report_only(args: argparse.Namespace) -> int:
    comparison = Comparison.from_json(json.loads(args.report.read_text()))
    if args.plot:
        # The earlier run's word on its plot no longer holds.
        comparison.notes = [n for n in comparison.notes if not n.startswith(PLOT_NOTE_PREFIX)]
        comparison.notes.append(plot_ratios(comparison, args.plot))
    print(render_output(comparison, args))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return report_only(args)
    _reexec_in_venv_if_needed()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _ensure_dfs_importable()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dfs-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    run = Run(args, workdir)
    started = time.monotonic()
    try:
        run.start_targets()
        run.run_rounds()
        run.profile()
    finally:
        run.stop_targets()
    command = " ".join(["compare.py", *(argv if argv is not None else sys.argv[1:])])
    comparison = run.comparison(command)
    comparison.notes.append(plot_ratios(comparison, args.plot or workdir / "ratios.png"))
    results_path = workdir / "results.json"
    results_path.write_text(json.dumps(comparison.to_json(), indent=2))
    progress(f"done in {time.monotonic() - started:.0f} s; results in {results_path}")
    print(render_output(comparison, args))
    incomplete = comparison.errors or any(comparison.missing(t) for t in comparison.targets)
    return EXIT_INCOMPLETE if incomplete else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
