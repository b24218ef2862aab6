"""Charts the flows log with their runs (PNG, drawn headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


MAX_BARS = 40  # past this, bars and their names are unreadable (and 1,000 of them take matplotlib 18 s)


def plot_class_counts(counts: dict[str, int], path: str | Path, title: str) -> Path:
    """Bar chart of images (or instances) per class, with the count on each bar; past ``MAX_BARS`` classes,
    the counts ranked from largest to smallest, the extremes named."""
    if len(counts) > MAX_BARS:
        return plot_ranked_counts(counts, path, title)
    names = list(counts)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(names) + 2), 3.2))
    bars = ax.bar(names, [counts[n] for n in names], color="#4c72b0")
    ax.bar_label(bars)
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.tick_params(axis="x", labelrotation=45 if len(names) > 6 else 0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_ranked_counts(counts: dict[str, int], path: str | Path, title: str) -> Path:
    """Many classes: one line of the counts from the largest class to the smallest (the full table is in the
    run's manifest and metrics)."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.fill_between(range(1, len(ranked) + 1), [count for _, count in ranked], step="mid", color="#4c72b0")
    ax.set_xlabel(f"{len(ranked)} classes, ranked by count")
    ax.set_ylabel("count")
    ax.set_title(f"{title}\nlargest {ranked[0][0]} ({ranked[0][1]}), smallest {ranked[-1][0]} ({ranked[-1][1]})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
