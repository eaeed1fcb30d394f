"""The outcome of one compare run: per-target summaries, ratios and floors, and its JSON.

Built from the samples compare.py collected; report.py and plot.py only read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aggregate import (
    DFS,
    PASSTHROUGH,
    Summary,
    floor_ops_per_s,
    ratio,
    ratio_pairs,
    summarize,
)
from figures import DURABLE_SEQUENTIAL_OPS, SPEC_BY_NAME
from targets import VS_FLOOR, VS_PASSTHROUGH


@dataclass(frozen=True, slots=True)
class TargetCheck:
    """One of issue 20's targets for dfs and what this run measured against it."""

    figure: str
    measure: str  # "dfs/passthrough" or "dfs/floor"
    target: float
    measured: float | None

    @property
    def of_target(self) -> float | None:
        return None if self.measured is None else self.measured / self.target


@dataclass
class Comparison:
    """Everything one run measured; `targets` are those that were measured, in order."""

    machine: dict[str, object]
    command: str
    rounds: int
    size_set: str
    status: dict[str, str]
    targets: list[str]
    figure_names: list[str]
    samples: dict[str, dict[str, list[float]]]
    round_trip_samples: list[float]
    fsync_samples: list[float]
    errors: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # 1-minute load average after each fs.py run: a busy machine explains wide spreads.
    load_samples: list[float] = field(default_factory=list)

    def summary(self, target: str, figure: str) -> Summary | None:
        return summarize(self.samples.get(target, {}).get(figure, []))

    def ratio(self, figure: str, target: str, reference: str) -> float | None:
        return ratio(self.summary(target, figure), self.summary(reference, figure))

    def pairs(self) -> list[tuple[str, str]]:
        return ratio_pairs(self.targets)

    @property
    def round_trip_s(self) -> Summary | None:
        return summarize(self.round_trip_samples)

    @property
    def fsync_s(self) -> Summary | None:
        return summarize(self.fsync_samples)

    def floor(self, figure: str) -> float | None:
        """Ops/s floor of a durable sequential op, from the passthrough's median."""
        passthrough = self.summary(PASSTHROUGH, figure)
        round_trip, fsync = self.round_trip_s, self.fsync_s
        if passthrough is None or round_trip is None or fsync is None or passthrough.median <= 0:
            return None
        return floor_ops_per_s(passthrough.median, round_trip.median, fsync.median)

    def floor_ops(self) -> list[str]:
        return [op for op in DURABLE_SEQUENTIAL_OPS if op in self.figure_names]

    def missing(self, target: str) -> list[str]:
        """Figures a measured target has no value for."""
        return [f for f in self.figure_names if self.summary(target, f) is None]

    def to_json(self) -> dict[str, object]:
        figures: dict[str, object] = {}
        for name in self.figure_names:
            per_target: dict[str, object] = {}
            for target in self.targets:
                s = self.summary(target, name)
                per_target[target] = None if s is None else {
                    "median": s.median, "spread": s.spread, "samples": list(s.samples)
                }
            figures[name] = {
                "unit": SPEC_BY_NAME[name].unit,
                "targets": per_target,
                "ratios": {f"{t}/{r}": self.ratio(name, t, r) for t, r in self.pairs()},
            }
        round_trip, fsync = self.round_trip_s, self.fsync_s
        return {
            "machine": self.machine,
            "command": self.command,
            "rounds": self.rounds,
            "quick": self.size_set == "quick",
            "size_set": self.size_set,
            "status": self.status,
            "targets": self.targets,
            "figures": figures,
            "floor": {
                "grpc_round_trip_s": round_trip.median if round_trip else None,
                "fsync_s": fsync.median if fsync else None,
                "grpc_round_trip_samples": self.round_trip_samples,
                "fsync_samples": self.fsync_samples,
                "ops": {
                    op: {
                        "floor_ops_per_s": self.floor(op),
                        "vs_floor": {t: self.vs_floor(t, op) for t in self.targets},
                    }
                    for op in self.floor_ops()
                },
            },
            "errors": self.errors,
            "notes": self.notes,
            "load_average_samples": self.load_samples,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comparison:
        """The comparison a results.json of an earlier run describes."""
        targets: list[str] = data["targets"]
        samples: dict[str, dict[str, list[float]]] = {t: {} for t in targets}
        for name, figure in data["figures"].items():
            for target, measured in figure["targets"].items():
                if measured is not None:
                    samples[target][name] = measured["samples"]
        return cls(
            machine=data["machine"], command=data["command"], rounds=data["rounds"],
            size_set=data.get("size_set") or ("quick" if data["quick"] else "full"),
            status=data["status"], targets=targets,
            figure_names=list(data["figures"]), samples=samples,
            round_trip_samples=data["floor"]["grpc_round_trip_samples"],
            fsync_samples=data["floor"]["fsync_samples"],
            errors=data["errors"], notes=data["notes"],
            load_samples=data.get("load_average_samples", []),
        )

    def vs_floor(self, target: str, op: str) -> float | None:
        """A target's median rate of `op` over the floor of `op`."""
        floor, value = self.floor(op), self.summary(target, op)
        return None if floor is None or value is None else value.median / floor

    def target_checks(self) -> list[TargetCheck]:
        """Issue 20's targets for dfs, farthest from being met first (unmeasured last)."""
        if DFS not in self.targets:
            return []
        checks = [
            TargetCheck(name, f"{DFS}/{PASSTHROUGH}", target, self.ratio(name, DFS, PASSTHROUGH))
            for name, target in VS_PASSTHROUGH.items() if name in self.figure_names
        ]
        checks += [TargetCheck(op, f"{DFS}/floor", VS_FLOOR, self.vs_floor(DFS, op))
                   for op in self.floor_ops()]
        return sorted(checks, key=lambda c: (c.of_target is None, c.of_target or 0.0))
