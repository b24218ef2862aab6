"""PNG screenshots of the MLflow UI, and the text each page shows, taken with headless Chromium (the
``screenshots`` extra: ``pip install image-lineage[screenshots]``).

Playwright drives the Chromium already on the machine (Debian's ``chromium``, or Google Chrome): nothing is
downloaded, and the pages are read as a user sees them, after the single-page app has fetched and drawn
them. Two sets:

- ``capture_ui`` (compare's ``screenshots=true``): the experiment with its runs, one run (its Datasets
  section), and a registered model with its versions and aliases.
- ``capture_lineage`` in ``docs/capture_ui.py`` (the README's pictures, and the UI test), with the helpers here.

MLflow 3.17's UI opens every experiment in its GenAI view unless the URL (or the sidebar switch, kept in
the browser) asks for ``workflowType=machine_learning``: each URL here asks for it. The MLflow Assistant
panel, which opens on a browser's first visit, is kept closed so it does not cover the page.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from image_lineage.core.errors import LineageError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WINDOW = (1400, 900)
LOAD_TIMEOUT_MS = 60_000  # a page's data on a busy 2-core machine
ML_VIEW = "workflowType=machine_learning"
ASSISTANT_CLOSED = ("localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');"
                    "localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');")

class ScreenshotError(LineageError):
    """Chromium (or Playwright) is missing, or a page never showed what it should."""


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise ScreenshotError(
        "screenshots=true needs headless Chromium: install Debian's `chromium` package (apt-get install chromium) "
        "or Google Chrome, or run compare with screenshots=false."
    )


def require_server(tracking_uri: str) -> str:
    if not tracking_uri.startswith(("http://", "https://")):
        raise ScreenshotError(
            f"screenshots need the MLflow UI of a tracking server; the tracking URI is {tracking_uri}. "
            f"Start `mlflow server` (or `mlflow ui`) and set MLFLOW_TRACKING_URI to it."
        )
    return tracking_uri.rstrip("/")


@contextlib.contextmanager
def browser_page() -> Iterator:
    """A fresh headless Chromium page (no profile, no network beyond the pages asked for)."""
    executable = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise ScreenshotError("screenshots=true needs Playwright: pip install playwright "
                              "(it drives the Chromium already installed; no browser download)") from exc
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": WINDOW[0], "height": WINDOW[1]})
            page.set_default_timeout(LOAD_TIMEOUT_MS)
            page.add_init_script(ASSISTANT_CLOSED)
            yield page
        finally:
            browser.close()


def open_page(page, url: str, ready_text: str) -> None:
    """Go to ``url`` and wait until ``ready_text`` is drawn (the app fetches after the page loads)."""
    page.goto(url)
    wait_for_text(page, ready_text)


def wait_for_text(page, text: str) -> None:
    try:
        page.get_by_text(text).first.wait_for()
    except Exception as exc:  # Playwright's TimeoutError: say which page and what was missing
        raise ScreenshotError(f"{page.url} never showed {text!r} within {LOAD_TIMEOUT_MS // 1000} s") from exc


def snap(page, out_dir: Path, name: str) -> tuple[Path, str]:
    """Screenshot the page into ``out_dir/<name>.png``; return that path and the text the page shows."""
    page.wait_for_timeout(1500)  # late cells and images settle
    png = out_dir / f"{name}.png"
    page.screenshot(path=str(png))
    return png, page.inner_text("body")


def ui_pages(base: str, experiment_id: str, run_id: str | None, model_name: str | None) -> dict[str, tuple[str, str]]:
    """{page: (url, text to wait for)}."""
    pages = {"experiment_runs": (f"{base}/#/experiments/{experiment_id}/runs?{ML_VIEW}", "Run Name")}
    if run_id:
        pages["run_datasets"] = (f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW}", "Datasets")
    if model_name:
        pages["registered_model"] = (f"{base}/#/models/{quote(model_name, safe='')}?{ML_VIEW}", "Version")
    return pages


def capture_ui(tracking_uri: str, experiment_id: str, run_id: str | None, model_name: str | None,
               out_dir: Path) -> dict[str, tuple[Path, str]]:
    """{page: (png path, page text)} for the experiment, one run and one registered model."""
    base = require_server(tracking_uri)
    out_dir.mkdir(parents=True, exist_ok=True)
    shots = {}
    with browser_page() as page:
        for name, (url, ready) in ui_pages(base, experiment_id, run_id, model_name).items():
            open_page(page, url, ready)
            shots[name] = snap(page, out_dir, name)
    return shots
