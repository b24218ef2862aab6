"""Charts the flows log with their runs (PNG, drawn headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def plot_class_counts(counts: dict[str, int], path: str | Path, title: str) -> Path:
    """Bar chart of images (or instances) per class, with the count on each bar."""
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
