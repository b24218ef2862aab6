"""Where runs go: the tracking URI, checked before anything is logged.

Precedence: the explicit argument, then ``MLFLOW_TRACKING_URI``, then the embedded ``sqlite:///mlflow.db``
(the file store is deprecated). A user with a typo in the server address, a sqlite file in a read-only
folder or a wrong password hears about it in seconds, in one line naming the URI and what works: MLflow
itself retries for minutes (7 retries, exponential backoff, 120 s timeouts) and ends in a traceback, so
its HTTP defaults are shortened here (explicit environment settings still win).
"""

from __future__ import annotations

import base64
import fcntl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow

from image_lineage.core import config
from image_lineage.core.errors import TrackingCredentialsRejected, TrackingServerUnreachable, TrackingUriUnusable
from image_lineage.tracking import _compat

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
HEALTH_TIMEOUT_S = 5.0


def configure_tracking(tracking_uri: str | None = None) -> str:
    """Set HTTP limits and the tracking URI; return the URI in use.

    Precedence: the explicit argument, then ``MLFLOW_TRACKING_URI``, then the embedded sqlite store.
    """
    config.apply_http_defaults()
    uri = tracking_uri or config.tracking_uri() or DEFAULT_TRACKING_URI
    check_scheme(uri)
    check_sqlite_writable(uri)
    check_server(uri)
    mlflow.set_tracking_uri(uri)
    create_sqlite_store_once(uri)
    return uri


def check_scheme(uri: str) -> None:
    """A URI whose scheme MLflow has no store for fails here, naming the ones it has (MLflow's own message
    speaks of the model registry and ends in a traceback)."""
    if not _compat.has_tracking_store(uri):
        known = ", ".join(f"{scheme}://" for scheme in _compat.tracking_store_schemes())
        raise TrackingUriUnusable(
            f"tracking URI {uri!r}: MLflow has no store for its scheme. Use sqlite:///<file>.db, "
            f"http(s)://<server>, postgresql://..., or a folder path (schemes known here: {known})."
        ) from None


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working folder, as SQLAlchemy reads
    it); None for other URIs and the in-memory database."""
    if not uri.startswith("sqlite:///"):
        return None
    name = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(name) if name and name != ":memory:" else None


def check_sqlite_writable(uri: str) -> None:
    """MLflow retries a store it cannot write for minutes, then fails naming neither path nor cause:
    check the database file and its folder (SQLite writes its journal beside the file) first."""
    path = sqlite_file(uri)
    if path is None:
        return
    folder = path.parent.absolute()
    while not folder.exists():  # MLflow creates missing folders: the nearest existing one must be writable
        folder = folder.parent
    try:
        if path.exists():
            with open(path, "r+b") as handle:
                start = handle.read(len(SQLITE_MAGIC))
            if start and start != SQLITE_MAGIC:
                raise TrackingUriUnusable(
                    f"tracking URI {uri!r}: the file {path} is not a SQLite database (it starts with {start[:12]!r}). "
                    f"Point MLFLOW_TRACKING_URI at an MLflow sqlite store, or at a new file, which is created "
                    f"(e.g. sqlite:///mlflow.db)."
                )
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        where = f"the database file {path}" if exc.filename == str(path) else f"the folder {folder}"
        raise TrackingUriUnusable(
            f"tracking URI {uri!r}: {where} is not writable ({exc.strerror}). Point "
            f"MLFLOW_TRACKING_URI at a sqlite file in a folder you can write, e.g. sqlite:///mlflow.db."
        ) from None


def create_sqlite_store_once(uri: str) -> None:
    """A new sqlite store's tables are created by one process at a time. MLflow creates them on first use
    without a lock: two first runs at once made the second die inside the schema creation ("table metrics
    already exists"). Here the first takes a lock file beside the database (``<name>.lock``, left there) and
    creates the store; the others wait for it, then find the tables there. A store this lock file is beside
    may be in the making: every process takes the lock briefly (MLflow builds the store once per process)."""
    path = sqlite_file(uri)
    if path is None:
        return
    lock_path = path.with_name(path.name + ".lock")
    if path.exists() and path.stat().st_size > 0 and not lock_path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        mlflow.MlflowClient(uri)  # builds the store: creates (or finds) its tables


def check_server(uri: str, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """Fail fast, naming the URI, when an HTTP tracking server does not answer ``/health``."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):  # noqa: S310 (http(s) only, checked above)
            pass
    except urllib.error.HTTPError:
        pass  # the server answered (an auth proxy may refuse /health): it is reachable
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingServerUnreachable(
            f"MLflow tracking server {uri} is not reachable ({exc}). Start it with "
            f"`{server_command(uri)}`, or set MLFLOW_TRACKING_URI to a "
            f"reachable server, or unset it to use the embedded {DEFAULT_TRACKING_URI}."
        ) from exc
    check_credentials(uri, timeout_s)


def server_command(uri: str) -> str:
    """The ``mlflow server`` command that serves ``uri`` (its host and port)."""
    parsed = urllib.parse.urlsplit(uri)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"mlflow server --host {parsed.hostname} --port {port}"


def check_credentials(uri: str, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """One cheap authenticated request, so a wrong password is one clear line, not a failed run later.

    The message names the variables, never their values."""
    request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    user, password, token = config.tracking_credentials()
    if user and password:
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {credentials}")
    elif token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):  # noqa: S310 (http(s) only)
            return
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            given = "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD" if user else "no credentials"
            raise TrackingCredentialsRejected(
                f"MLflow tracking server {uri} refused the request (HTTP {exc.code}, with {given}). Set "
                f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to an account "
                f"of that server."
            ) from None
    except (urllib.error.URLError, OSError):
        return  # reachability was checked just before; MLflow's own retries handle a blip
