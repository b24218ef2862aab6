"""Where runs go: tracking URI, experiment and run resolution, HTTP behaviour.

Every entry point opens its run through :func:`start_run`, so the rules live in one place:

* ``mlflow run`` creates the run itself and hands it over in ``MLFLOW_RUN_ID`` (together with
  ``MLFLOW_TRACKING_URI`` and ``MLFLOW_EXPERIMENT_ID``). We resume that run and never switch
  experiments, or MLflow would refuse the run id or log into the wrong place.
* Outside ``mlflow run`` the caller's experiment name is set, and the default store is the
  embedded ``sqlite:///mlflow.db`` (the file store is deprecated).
* A plain ``mlflow server`` (uvicorn, 4 workers) holds each reply's body ~40 ms on a kept-alive
  connection; :mod:`image_lineage.delayed_ack` acknowledges replies at once so it does not.
* MLflow retries HTTP requests for minutes by default (7 retries, exponential backoff, 120 s
  timeouts). A user with a typo in the server address should hear about it in seconds, so the
  defaults here are shorter; explicit environment settings still win.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shlex
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.utils.time import get_current_time_millis

from image_lineage.delayed_ack import install_quick_acks

LOGGER = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT_ID = "0"  # MLflow's "Default" experiment
# The MLflow 3 UI reads it where it has no GenAI / Model training switch; 3.17's UI goes by the URL's
# workflowType instead, which the run addresses printed here ask for (print_run_url).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
_kind_marked: set[tuple[str, str]] = set()  # (tracking URI, experiment id) tagged by this process
SUPPRESS_URL_ENV = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
URLS_OURS_ENV = "IMAGE_LINEAGE_PRINTS_RUN_URLS"  # tells child processes the switch above is ours, not the user's
# MLflow samples system metrics every 10 s: a short training run would show none. Users can still set it.
SYSTEM_METRICS_INTERVAL_S = "1"

# MLflow reads these for every REST call; setdefault keeps a user's own choice.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
HEALTH_TIMEOUT_S = 5.0
UPLOAD_WORKERS = 8


class TrackingServerUnreachable(RuntimeError):
    """The tracking URI names an HTTP server that does not answer."""


class TrackingCredentialsRejected(RuntimeError):
    """The tracking server answers, but refuses the credentials (or their absence)."""


class TrackingUriUnusable(RuntimeError):
    """The tracking URI names no store MLflow has, or a sqlite file that cannot be written."""


def configure_tracking(tracking_uri: str | None = None) -> str:
    """Set HTTP limits and the tracking URI; return the URI in use.

    Precedence: the explicit argument, then ``MLFLOW_TRACKING_URI``, then the embedded sqlite store.
    """
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    install_quick_acks()  # a plain `mlflow server` would add ~40 ms to each REST call (see delayed_ack)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    check_scheme(uri)
    check_sqlite_writable(uri)
    check_server(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def check_scheme(uri: str) -> None:
    """A URI whose scheme MLflow has no store for fails here, naming the ones it has (MLflow's own message
    speaks of the model registry and ends in a traceback)."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry as stores

    try:
        stores.get_store_builder(uri)
    except MlflowException:
        known = ", ".join(sorted(f"{s}://" for s in stores._registry if s))
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
            with open(path, "r+b"):
                pass
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        where = f"the database file {path}" if exc.filename == str(path) else f"the folder {folder}"
        raise TrackingUriUnusable(
            f"tracking URI {uri!r}: {where} is not writable ({exc.strerror}). Point "
            f"MLFLOW_TRACKING_URI at a sqlite file in a folder you can write, e.g. sqlite:///mlflow.db."
        ) from None


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
            f"`mlflow server --host 127.0.0.1 --port 5000`, or set MLFLOW_TRACKING_URI to a "
            f"reachable server, or unset it to use the embedded {DEFAULT_TRACKING_URI}."
        ) from exc
    check_credentials(uri, timeout_s)


def check_credentials(uri: str, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """One cheap authenticated request, so a wrong password is one clear line, not a failed run later.

    The message names the variables, never their values."""
    request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
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


def in_project_run() -> bool:
    """True when ``mlflow run`` created the run this process should log into."""
    return bool(os.environ.get("MLFLOW_RUN_ID"))


def resolve_experiment_id(experiment_name: str | None) -> str:
    """The experiment runs of this process go to; sets it as current outside ``mlflow run``, and tags it
    ``mlflow.experimentKind`` (from the experiment the lookup returned: no request when it has a kind)."""
    if in_project_run():
        return os.environ.get("MLFLOW_EXPERIMENT_ID") or mlflow.get_run(os.environ["MLFLOW_RUN_ID"]).info.experiment_id
    name = experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        experiment = mlflow.set_experiment(name)
        mark_experiment_kind(experiment.experiment_id, experiment.tags)
        return experiment.experiment_id
    return os.environ.get("MLFLOW_EXPERIMENT_ID") or DEFAULT_EXPERIMENT_ID


@contextlib.contextmanager
def start_run(
    experiment_name: str | None = None, run_name: str | None = None, experiment_id: str | None = None,
    log_system_metrics: bool | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Open (or resume, under ``mlflow run``) the run, named ``run_name``.

    Pass ``experiment_id`` when :func:`resolve_experiment_id` already ran (saves requests). An
    exception inside the block ends the run FAILED: MLflow's own context manager does this, and
    ``mlflow run`` marks its run FAILED when the entry point exits non-zero. The run's address is printed
    when it ends, as MLflow does, but opening the UI's training view (and without MLflow's extra request).
    """
    if log_system_metrics:
        os.environ.setdefault("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", SYSTEM_METRICS_INTERVAL_S)
    print_url, run = run_urls_printed_here(), None
    try:
        if in_project_run():
            with mlflow.start_run(log_system_metrics=log_system_metrics) as run:
                mark_experiment_kind(run.info.experiment_id)
                if run_name and run.info.run_name != run_name:
                    mlflow.MlflowClient().update_run(run.info.run_id, name=run_name)
                yield run
        else:
            experiment_id = experiment_id or resolve_experiment_id(experiment_name)
            with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or None,
                                  log_system_metrics=log_system_metrics) as run:
                mark_experiment_kind(experiment_id)
                yield run
    finally:  # a FAILED run's address too, as MLflow prints it
        if print_url and run is not None:
            print_run_url(run.info.experiment_id, run.info.run_id, run_name or run.info.run_name)


def run_urls_printed_here() -> bool:
    """True when this project prints run addresses in MLflow's place: unless the user set MLflow's switch
    themselves, MLflow's printing (which costs a ``get_run`` request per run) is turned off."""
    if os.environ.get(SUPPRESS_URL_ENV) is None or os.environ.get(URLS_OURS_ENV):
        os.environ[SUPPRESS_URL_ENV], os.environ[URLS_OURS_ENV] = "true", "1"
        return True
    return False


def print_run_url(experiment_id: str, run_id: str, run_name: str) -> None:
    """MLflow's two "View run / View experiment" lines for a tracking server, with the UI's training view
    asked for (MLflow 3.17 opens experiments in its GenAI view otherwise)."""
    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    experiment_url = f"{uri.rstrip('/')}/#/experiments/{experiment_id}"
    print(f"🏃 View run {run_name} at: {experiment_url}/runs/{run_id}?workflowType=machine_learning")
    print(f"🧪 View experiment at: {experiment_url}/runs?workflowType=machine_learning", flush=True)


def mark_experiment_kind(experiment_id: str, known_tags: dict | None = None) -> None:
    """Tag the experiment as model development (``mlflow.experimentKind``) unless it already has a kind.
    Once per experiment and process; ``known_tags`` (from a lookup already made) saves the request."""
    key = (mlflow.get_tracking_uri(), experiment_id)  # ids repeat across stores
    if key in _kind_marked:
        return
    client = mlflow.MlflowClient()
    tags = known_tags if known_tags is not None else client.get_experiment(experiment_id).tags
    if EXPERIMENT_KIND_TAG not in tags:
        try:
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        except MlflowException:
            # two runs starting at once in a new experiment race to insert the tag; the loser finds it set
            if EXPERIMENT_KIND_TAG not in client.get_experiment(experiment_id).tags:
                raise
    _kind_marked.add(key)


@contextlib.contextmanager
def schema_hints_silenced() -> Iterator[None]:
    """MLflow hints that integer columns cannot hold missing values whenever it infers a dataset
    schema: true, and irrelevant to the manifests and image tables logged here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        yield


def upload_folder(local_dir: str | Path, artifact_path: str | None = None, workers: int = UPLOAD_WORKERS) -> int:
    """Upload every file under ``local_dir`` to the active run; return the number of files.

    MLflow's HTTP artifact repository sends one PUT per file, one after another, and
    ``MlflowClient.log_artifact`` looks the run up again for every file. Here one repository object
    serves every file and a small thread pool sends the PUTs, hiding most of the per-request latency
    (staging folders hold a few hundred files at most: full sets travel as one archive).
    """
    repository = get_artifact_repository(mlflow.active_run().info.artifact_uri)
    root = Path(local_dir)
    jobs = []
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        parent = file.parent.relative_to(root).as_posix()
        destination = "/".join(part for part in (artifact_path, parent) if part and part != ".") or None
        jobs.append((file, destination))
    with ThreadPoolExecutor(workers) as pool:
        # list() re-raises the first failed upload, so the run ends FAILED rather than partial.
        list(pool.map(lambda job: repository.log_artifact(str(job[0]), job[1]), jobs))
    return len(jobs)


def link_or_copy(source: str | Path, destination: str | Path) -> None:
    """Stage a file for upload without reading it: a hard link, or a copy across filesystems."""
    try:
        os.link(Path(source).resolve(), destination)
    except OSError:  # another filesystem, or links not allowed
        shutil.copyfile(source, destination)


def without_logged_params(logged: dict[str, str], params: dict[str, str]) -> dict[str, str]:
    """Drop params ``mlflow run`` already logged with the same value (it logs them shell-quoted).

    A param cannot be changed once logged, so re-sending an equal one is pointless and a different
    one is an error MLflow reports by name.
    """
    return {k: v for k, v in params.items() if logged.get(k) not in (v, shlex.quote(v))}


def log_values(run: mlflow.ActiveRun, params: dict | None = None, metrics: dict | None = None,
               tags: dict | None = None) -> None:
    """Params, metrics and tags of a run in one ``log_batch`` request instead of one call per value;
    params that ``mlflow run`` already logged are left out."""
    now = get_current_time_millis()
    params = without_logged_params(run.data.params, {k: str(v) for k, v in (params or {}).items()})
    mlflow.MlflowClient().log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


class MetricBuffer:
    """Metrics per step or epoch, sent with ``log_batch`` every ``flush_every`` steps (and on ``flush``),
    not one request per value."""

    def __init__(self, run_id: str, flush_every: int = 10):
        self.run_id, self.flush_every, self.pending = run_id, flush_every, []

    def add(self, step: int, metrics: dict) -> None:
        now = get_current_time_millis()
        self.pending.extend(Metric(key, float(value), now, step) for key, value in metrics.items())
        if step % self.flush_every == 0:
            self.flush()

    def flush(self) -> None:
        for start in range(0, len(self.pending), 1000):  # log_batch takes at most 1000 metrics
            mlflow.MlflowClient().log_batch(self.run_id, metrics=self.pending[start:start + 1000])
        self.pending = []
