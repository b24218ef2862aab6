"""Dataset profiles for MLflow's Datasets panel: what a person wants to know about image data at a glance.

MLflow's own profiles hold row counts and byte sizes. Every dataset this project logs carries, besides:
``num_images`` (or ``num_rows``), ``class_counts`` (or ``instances_per_category``), ``image_width`` and
``image_height`` as {min, median, max}, ``bytes``, ``digest`` (the full sha256) and, when the leakage check
ran, ``quality_status``. All are summaries, so a profile stays a few KB for 80 categories and 100,000 images.
"""

from __future__ import annotations

import statistics


class ProfileMixin:
    """Adds ``extra_profile`` to the profile of the MLflow dataset class it is mixed into."""

    extra_profile: dict = {}

    @property
    def profile(self):
        return {**(super().profile or {}), **self.extra_profile}


_PROFILED: dict[type, type] = {}


def with_profile(dataset, fields: dict):
    """``dataset`` (any MLflow dataset, as ``mlflow.data.from_*`` built it) with ``fields`` in its profile."""
    base = type(dataset)
    if base not in _PROFILED:
        _PROFILED[base] = type(f"Profiled{base.__name__}", (ProfileMixin, base), {})
    dataset.__class__ = _PROFILED[base]
    dataset.extra_profile = {k: v for k, v in fields.items() if v is not None}
    return dataset


def spread(values) -> dict | None:
    values = list(values)
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def image_profile(widths, heights, sizes, counts: dict, digest: str, count_key: str = "class_counts",
                  quality_status: str | None = None) -> dict:
    widths, sizes = list(widths), list(sizes)
    return {"num_images": len(widths), count_key: counts, "image_width": spread(widths),
            "image_height": spread(heights), "bytes": sum(sizes), "digest": digest, "quality_status": quality_status}
