"""What leakage does to a run: ``on_leakage`` = ``warn`` (log it), ``fail`` (stop: the run ends FAILED with its
report logged, before anything heavy) or ``ignore``. One gate, for a check just made and for a result an
earlier run of the same digest recorded."""

from __future__ import annotations

import logging

from image_lineage.core.errors import LeakageError
from image_lineage.core.names import ON_LEAKAGE_CHOICES, require_choice

LOGGER = logging.getLogger(__name__)


def require_on_leakage(on_leakage: str) -> None:
    """Refuse an unknown ``on_leakage`` before any image is read."""
    require_choice("on_leakage", on_leakage, ON_LEAKAGE_CHOICES)


def apply_gate(status: str, on_leakage: str, detail: str = "images leak between splits.", where: str = "the run") -> None:
    """For a ``leakage`` status: ``warn`` logs ``detail``, ``fail`` raises it (naming the report in ``where``),
    ``ignore`` does nothing. Any other status passes."""
    require_on_leakage(on_leakage)
    if status != "leakage" or on_leakage == "ignore":
        return
    message = f"{detail} See quality/report.html and quality/pairs.csv in {where}."
    if on_leakage == "fail":
        raise LeakageError(f"{message} Remove the copies from one split, or pass -P on_leakage=warn to go on.")
    LOGGER.warning("%s", message)
