"""The human report of a compare run: target status, figures with ratios, floors.

The same rows are rendered as a plain-text table (terminal) or as Markdown (docs).
"""

from __future__ import annotations

from comparison import Comparison
from figures import SPEC_BY_NAME
from table import number, render

MISSING = "-"
Rows = list[list[str]]


def _cell(comparison: Comparison, target: str, figure: str) -> str:
    summary = comparison.summary(target, figure)
    if summary is None:
        return MISSING
    return f"{number(summary.median)} ({summary.spread * 100:.0f}%)"


def _ratio(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def figure_rows(comparison: Comparison) -> tuple[list[str], Rows]:
    pairs = comparison.pairs()
    header = ["figure", "unit", *comparison.targets, *(f"{t}/{r}" for t, r in pairs)]
    rows = [
        [
            name,
            SPEC_BY_NAME[name].unit,
            *(_cell(comparison, t, name) for t in comparison.targets),
            *(_ratio(comparison.ratio(name, t, r)) for t, r in pairs),
        ]
        for name in comparison.figure_names
    ]
    return header, rows


def floor_rows(comparison: Comparison) -> tuple[list[str], Rows]:
    header = ["operation", "floor ops/s", *(f"{t}/floor" for t in comparison.targets)]
    rows = []
    for op in comparison.floor_ops():
        floor = comparison.floor(op)
        cells = [_ratio(comparison.vs_floor(t, op)) for t in comparison.targets]
        rows.append([op, MISSING if floor is None else number(floor), *cells])
    return header, rows


def target_rows(comparison: Comparison) -> tuple[list[str], Rows]:
    """Issue 20's targets for dfs, farthest from being met first."""
    header = ["figure", "measure", "target", "measured", "of target"]
    rows = [
        [check.figure, check.measure, f">= {check.target:.2f}", _ratio(check.measured),
         _ratio(check.of_target)]
        for check in comparison.target_checks()
    ]
    return header, rows


def load_line(comparison: Comparison) -> str:
    loads = comparison.load_samples
    if not loads:
        return "load average: not recorded"
    cores = comparison.machine.get("cores")
    return (f"1-minute load average after each fs.py run: {min(loads):.1f} to {max(loads):.1f} "
            f"on {cores} cores (other work on the machine widens the spreads)")


def floor_inputs(comparison: Comparison) -> str | None:
    round_trip, fsync = comparison.round_trip_s, comparison.fsync_s
    if round_trip is None or fsync is None or not comparison.floor_ops():
        return None
    return (
        f"gRPC unary round trip {round_trip.median * 1e6:.0f} us "
        f"({round_trip.spread * 100:.0f}%), fsync of a 4 KiB append "
        f"{fsync.median * 1e6:.0f} us ({fsync.spread * 100:.0f}%), medians over the rounds"
    )


def text(comparison: Comparison) -> str:
    kind = comparison.size_set
    machine = comparison.machine
    header, rows = figure_rows(comparison)
    parts = [
        f"dfs benchmark comparison: {comparison.rounds} interleaved round(s), {kind} sizes",
        f"machine: {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"{machine.get('memory_gib')} GiB, {machine.get('os')}, kernel {machine.get('kernel')}, "
        f"Python {machine.get('python')}, pyfuse3 {machine.get('pyfuse3')}; "
        f"work dir on {machine.get('workdir_fs')}",
        load_line(comparison),
        "",
        render(["target", "status"], [[n, s] for n, s in comparison.status.items()], "ll"),
        "",
        render(header, rows, "ll" + "r" * (len(header) - 2)),
        "value (n%): median over the rounds (spread = (max - min) / median); "
        "ratios of medians, > 1 = faster",
    ]
    parts += [f"{name}: {status}" for name, status in comparison.status.items()
              if name not in comparison.targets]
    inputs = floor_inputs(comparison)
    if inputs is None:
        parts += ["", "per-operation floor: not measured"]
    else:
        parts += ["", "Per-operation floor of sequential durable operations: "
                  "1 / (passthrough op time + gRPC round trip + fsync)", inputs, ""]
        parts.append(render(*floor_rows(comparison)))
    if comparison.target_checks():
        parts += ["", "dfs against issue 20's targets (farthest first):", "",
                  render(*target_rows(comparison), "llrrr")]
    parts += [""] if comparison.errors or comparison.notes else []
    for target, messages in comparison.errors.items():
        parts += [f"ERROR {target}: {message}" for message in messages]
    parts += [f"note: {note}" for note in comparison.notes]
    return "\n".join(parts)


def _markdown_table(header: list[str], rows: Rows) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(comparison: Comparison) -> str:
    """The figures and floor tables as Markdown, for docs/benchmarks.md."""
    parts = [load_line(comparison) + ".", "", _markdown_table(*figure_rows(comparison)), ""]
    parts += [f"{name}: {status}\n" for name, status in comparison.status.items()
              if name not in comparison.targets]
    inputs = floor_inputs(comparison)
    if inputs is not None:
        parts += [f"Floor = 1 / (passthrough op time + gRPC round trip + fsync); {inputs}.", ""]
        parts.append(_markdown_table(*floor_rows(comparison)))
    if comparison.target_checks():
        parts += ["", "dfs against issue 20's targets, farthest first:", "",
                  _markdown_table(*target_rows(comparison))]
    return "\n".join(parts)
