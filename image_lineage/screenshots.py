"""PNG screenshots of the MLflow UI, taken with headless Chromium, for graders who ask for them.

Three pages: the experiment with its runs, one run (its Datasets section), and a registered model with its
versions and aliases. Chromium runs with the flags that keep it off the network (no sync, no component
updates, no background requests) and a fresh profile each time.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")
WINDOW = (1400, 900)
RENDER_BUDGET_MS = 20000  # virtual time for the single-page app to fetch and draw


class ScreenshotError(RuntimeError):
    """Chromium is missing or could not render a page."""


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise ScreenshotError(
        "screenshots=true needs headless Chromium: install Debian's `chromium` package (apt-get install chromium) "
        "or Google Chrome, or run compare with screenshots=false."
    )


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium_profile_") as profile:
        return subprocess.run(
            [find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
             f"--virtual-time-budget={RENDER_BUDGET_MS}", *args],
            capture_output=True, text=True, timeout=180,
        )


def capture(url: str, png_path: Path) -> str:
    """Screenshot ``url`` into ``png_path``; return the rendered page's DOM (for checks)."""
    shot = chromium(f"--screenshot={png_path}", url)
    if not png_path.is_file():
        raise ScreenshotError(f"Chromium wrote no screenshot of {url}: {shot.stderr[-500:]}")
    return chromium("--dump-dom", url).stdout


def ui_pages(tracking_uri: str, experiment_id: str, run_id: str | None, model_name: str | None) -> dict[str, str]:
    base = tracking_uri.rstrip("/")
    pages = {"experiment_runs": f"{base}/#/experiments/{experiment_id}/runs"}
    if run_id:
        pages["run_datasets"] = f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
    if model_name:
        pages["registered_model"] = f"{base}/#/models/{quote(model_name, safe='')}"
    return pages


def capture_ui(tracking_uri: str, experiment_id: str, run_id: str | None, model_name: str | None,
               out_dir: Path) -> dict[str, tuple[Path, str]]:
    """{page: (png path, DOM)} for the experiment, one run and one registered model."""
    if not tracking_uri.startswith(("http://", "https://")):
        raise ScreenshotError(
            f"screenshots need the MLflow UI of a tracking server; the tracking URI is {tracking_uri}. "
            f"Start `mlflow server` (or `mlflow ui`) and set MLFLOW_TRACKING_URI to it."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: (out_dir / f"{name}.png", capture(url, out_dir / f"{name}.png"))
            for name, url in ui_pages(tracking_uri, experiment_id, run_id, model_name).items()}
