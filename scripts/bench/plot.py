"""A PNG of a compare run's ratios, when matplotlib is importable; a note otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comparison import Comparison

PLOT_NOTE_PREFIX = "plot "


def plot_ratios(comparison: Comparison, path: Path) -> str:
    """Draw every ratio column as grouped horizontal bars; returns what was done."""
    try:
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")  # no display: write a file only
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install matplotlib)"
    pairs = comparison.pairs()
    names = comparison.figure_names
    if not pairs:
        return "plot skipped: fewer than two targets measured"
    checks = comparison.target_checks()
    heights = [0.22 * len(names) * len(pairs) + 1.0] + ([0.3 * len(checks) + 1.0] if checks else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=(9, sum(heights) + 0.5), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    ax = axes[0][0]
    bar = 0.8 / len(pairs)
    for i, (target, reference) in enumerate(pairs):
        values = [_or_nan(comparison.ratio(name, target, reference)) for name in names]
        positions = [row + i * bar for row in range(len(names))]
        ax.barh(positions, values, height=bar, label=f"{target} / {reference}")
    ax.set_yticks([row + bar * (len(pairs) - 1) / 2 for row in range(len(names))], names)
    _finish(ax, f"ratios of medians over {comparison.rounds} round(s), {comparison.size_set} sizes")
    if checks:
        ax = axes[1][0]
        rows = range(len(checks))
        ax.barh(rows, [_or_nan(c.measured) for c in checks], height=0.6, color="tab:green",
                label="dfs, measured")
        ax.scatter([c.target for c in checks], rows, marker="|", s=300, color="black",
                   zorder=3, label="issue 20's target")
        ax.set_yticks(rows, [f"{c.figure} ({c.measure})" for c in checks])
        _finish(ax, "dfs against its targets, farthest first")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to {path}"


def _finish(ax: Any, title: str) -> None:
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("ratio (log scale, > 1 = faster)")
    ax.set_title(title)
    ax.legend(loc="lower right")


def _or_nan(value: float | None) -> float:
    # A missing ratio draws no bar; 0 would break the log scale.
    return float("nan") if value is None else value
