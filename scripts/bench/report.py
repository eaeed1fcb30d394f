"""The human report of a compare run: target status, figures with ratios, floors."""

from __future__ import annotations

from comparison import Comparison
from figures import SPEC_BY_NAME
from table import number, render

MISSING = "-"


def _cell(comparison: Comparison, target: str, figure: str) -> str:
    summary = comparison.summary(target, figure)
    if summary is None:
        return MISSING
    return f"{number(summary.median)} ({summary.spread * 100:.0f}%)"


def _ratio(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def status_table(comparison: Comparison) -> str:
    return render(["target", "status"],
                  [[name, status] for name, status in comparison.status.items()], "ll")


def figures_table(comparison: Comparison) -> str:
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
    return render(header, rows, "ll" + "r" * (len(header) - 2))


def floor_table(comparison: Comparison) -> str:
    round_trip, fsync = comparison.round_trip_s, comparison.fsync_s
    if round_trip is None or fsync is None or not comparison.floor_ops():
        return "per-operation floor: not measured"
    lines = [
        "Per-operation floor of sequential durable operations: "
        "1 / (passthrough op time + gRPC round trip + fsync)",
        f"gRPC unary round trip {round_trip.median * 1e6:.0f} us "
        f"({round_trip.spread * 100:.0f}%), fsync of a 4 KiB append "
        f"{fsync.median * 1e6:.0f} us ({fsync.spread * 100:.0f}%), medians over the rounds",
        "",
    ]
    header = ["operation", "floor ops/s", *(f"{t}/floor" for t in comparison.targets)]
    rows = []
    for op in comparison.floor_ops():
        floor = comparison.floor(op)
        cells = []
        for target in comparison.targets:
            value = comparison.summary(target, op)
            cells.append(_ratio(None if floor is None or value is None else value.median / floor))
        rows.append([op, MISSING if floor is None else number(floor), *cells])
    return "\n".join(lines) + render(header, rows)


def text(comparison: Comparison) -> str:
    kind = "quick" if comparison.quick else "full"
    machine = comparison.machine
    parts = [
        f"dfs benchmark comparison: {comparison.rounds} interleaved round(s), {kind} sizes",
        f"machine: {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"{machine.get('memory_gib')} GiB, {machine.get('os')}, kernel {machine.get('kernel')}, "
        f"Python {machine.get('python')}, pyfuse3 {machine.get('pyfuse3')}; "
        f"work dir on {machine.get('workdir_fs')}",
        "",
        status_table(comparison),
        "",
        figures_table(comparison),
        "value (n%): median over the rounds (spread = (max - min) / median); "
        "ratios of medians, > 1 = faster",
    ]
    parts += [f"{name}: {status}" for name, status in comparison.status.items()
              if name not in comparison.targets]
    parts += ["", floor_table(comparison)]
    for target, messages in comparison.errors.items():
        parts += [f"ERROR {target}: {message}" for message in messages]
    parts += [f"note: {note}" for note in comparison.notes]
    return "\n".join(parts)
