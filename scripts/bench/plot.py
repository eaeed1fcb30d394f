"""A PNG of a compare run's ratios, when matplotlib is importable; a note otherwise."""

from __future__ import annotations

from pathlib import Path

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
    bar = 0.8 / len(pairs)
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(names) * len(pairs) + 1.5))
    for i, (target, reference) in enumerate(pairs):
        values = [_or_nan(comparison.ratio(name, target, reference)) for name in names]
        positions = [row + i * bar for row in range(len(names))]
        ax.barh(positions, values, height=bar, label=f"{target} / {reference}")
    ax.set_yticks([row + bar * (len(pairs) - 1) / 2 for row in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("ratio of medians (log scale, > 1 = faster)")
    ax.set_title(f"dfs benchmark ratios (medians of {comparison.rounds} round(s))")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"plot written to {path}"


def _or_nan(value: float | None) -> float:
    # A missing ratio draws no bar; 0 would break the log scale.
    return float("nan") if value is None else value
