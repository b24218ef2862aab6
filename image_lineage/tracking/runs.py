"""Where a run goes and what it holds first: experiment and run resolution, run addresses, batched values.

Every flow opens its run through :func:`start_run`, so the rules live in one place:

* ``mlflow run`` creates the run itself and hands it over in ``MLFLOW_RUN_ID`` (together with
  ``MLFLOW_TRACKING_URI`` and ``MLFLOW_EXPERIMENT_ID``). We resume that run and never switch
  experiments, or MLflow would refuse the run id or log into the wrong place.
* Outside ``mlflow run`` the caller's experiment name is set.
* Params, metrics and tags go in one ``log_batch`` request (:func:`log_values`), not one call per value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import time
from typing import Iterator

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from image_lineage.core import config
from image_lineage.tracking._compat import MAX_PARAM_LENGTH
from image_lineage.tracking.openlineage_events import run_events

PARAMS_ARTIFACT_DIR = "params"  # where a param too long for MLflow is logged whole

LOGGER = logging.getLogger(__name__)

DEFAULT_EXPERIMENT_ID = "0"  # MLflow's "Default" experiment
# The MLflow 3 UI reads it where it has no GenAI / Model training switch; 3.17's UI goes by the URL's
# workflowType instead, which the run addresses printed here ask for (print_run_url).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
_kind_marked: set[tuple[str, str]] = set()  # (tracking URI, experiment id) tagged by this process
SYSTEM_METRICS_INTERVAL_S = "1"  # MLflow samples every 10 s: a short training run would show none


def now_millis() -> int:
    return int(time.time() * 1000)


def in_project_run() -> bool:
    """True when ``mlflow run`` created the run this process should log into."""
    return config.project_run_id() is not None


def resolve_experiment_id(experiment_name: str | None) -> str:
    """The experiment runs of this process go to; sets it as current outside ``mlflow run``, and tags it
    ``mlflow.experimentKind`` (from the experiment the lookup returned: no request when it has a kind)."""
    if in_project_run():
        return config.experiment_id() or mlflow.get_run(config.project_run_id()).info.experiment_id
    name = experiment_name or config.experiment_name()
    if name:
        experiment = mlflow.set_experiment(name)
        mark_experiment_kind(experiment.experiment_id, experiment.tags)
        return experiment.experiment_id
    return config.experiment_id() or DEFAULT_EXPERIMENT_ID


@contextlib.contextmanager
def start_run(
    experiment_name: str | None = None, run_name: str | None = None, experiment_id: str | None = None,
    log_system_metrics: bool | None = None, job: str | None = None, reads: list | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Open (or resume, under ``mlflow run``) the run, named ``run_name``.

    Pass ``experiment_id`` when :func:`resolve_experiment_id` already ran (saves requests). An
    exception inside the block ends the run FAILED: MLflow's own context manager does this, and
    ``mlflow run`` marks its run FAILED when the entry point exits non-zero. The run's address is printed
    when it ends, as MLflow does, but opening the UI's training view (and without MLflow's extra request).
    ``job``: the entry point the run is for; with it, the run sends OpenLineage events when a transport is
    configured (:mod:`image_lineage.tracking.openlineage_events`), naming ``reads`` (what the flow read) as inputs.
    """
    if log_system_metrics:
        config.default_system_metrics_interval(SYSTEM_METRICS_INTERVAL_S)
    print_url, run = config.run_links_wanted(), None
    config.silence_mlflow_run_links()
    try:
        if in_project_run():
            with mlflow.start_run(log_system_metrics=log_system_metrics) as run:
                mark_experiment_kind(run.info.experiment_id)
                if run_name and run.info.run_name != run_name:
                    mlflow.MlflowClient().update_run(run.info.run_id, name=run_name)
                with run_events(run, job, reads):
                    yield run
        else:
            experiment_id = experiment_id or resolve_experiment_id(experiment_name)
            with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or None,
                                  log_system_metrics=log_system_metrics) as run:
                mark_experiment_kind(experiment_id)
                with run_events(run, job, reads):
                    yield run
    finally:  # a FAILED run's address too, as MLflow prints it
        if print_url and run is not None:
            print_run_url(run.info.experiment_id, run.info.run_id, run_name or run.info.run_name)


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


def without_logged_params(logged: dict[str, str], params: dict[str, str]) -> dict[str, str]:
    """Drop params ``mlflow run`` already logged with the same value (it logs them shell-quoted).

    A param cannot be changed once logged, so re-sending an equal one is pointless and a different
    one is an error MLflow reports by name.
    """
    return {k: v for k, v in params.items() if logged.get(k) not in (v, shlex.quote(v))}


def log_values(run: mlflow.ActiveRun, params: dict | None = None, metrics: dict | None = None,
               tags: dict | None = None) -> None:
    """Params, metrics and tags of a run in one ``log_batch`` request instead of one call per value;
    params that ``mlflow run`` already logged are left out, and one too long for MLflow goes whole into an
    artifact (:func:`fit_params`)."""
    now = now_millis()
    params = without_logged_params(run.data.params, {k: str(v) for k, v in (params or {}).items()})
    params = fit_params(run.info.run_id, params)
    mlflow.MlflowClient().log_batch(
        run.info.run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def fit_params(run_id: str, params: dict[str, str]) -> dict[str, str]:
    """``params`` with each value MLflow would cut (past ``MAX_PARAM_LENGTH`` characters: a cut JSON list no
    longer parses) logged whole as the artifact ``params/<name>.json`` and replaced by a JSON pointer to it,
    ``{"artifact": "params/<name>.json", "length": <characters>}``: every logged value parses, nothing is lost."""
    fitted = dict(params)
    for name, value in params.items():
        if len(value) > MAX_PARAM_LENGTH:
            path = f"{PARAMS_ARTIFACT_DIR}/{name}.json"
            mlflow.MlflowClient().log_text(run_id, value, path)
            fitted[name] = json.dumps({"artifact": path, "length": len(value)})
    return fitted


class MetricBuffer:
    """Metrics per step or epoch, sent with ``log_batch`` every ``flush_every`` steps (and on ``flush``),
    not one request per value."""

    def __init__(self, run_id: str, flush_every: int = 10):
        self.run_id, self.flush_every, self.pending = run_id, flush_every, []

    def add(self, step: int, metrics: dict) -> None:
        now = now_millis()
        self.pending.extend(Metric(key, float(value), now, step) for key, value in metrics.items())
        if step % self.flush_every == 0:
            self.flush()

    def flush(self) -> None:
        for start in range(0, len(self.pending), 1000):  # log_batch takes at most 1000 metrics
            mlflow.MlflowClient().log_batch(self.run_id, metrics=self.pending[start:start + 1000])
        self.pending = []
