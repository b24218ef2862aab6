"""OpenLineage events for the runs that log, check or train on a dataset, when the user configures a transport.

Data catalogs (Marquez, OpenMetadata, DataHub, Airflow's lineage) learn which job read which dataset version
from OpenLineage run events; MLflow sends none. Every run opened through
:func:`image_lineage.tracking.runs.start_run` with a ``job`` name sends, through ``openlineage-python``'s own
client and transport:

* ``START`` when the run opens: the job (``<experiment>.<entry point>`` in ``$OPENLINEAGE_NAMESPACE``,
  default ``image_lineage``) and the run, whose OpenLineage id is the MLflow run id written as a UUID;
* ``COMPLETE`` when it ends (``FAIL`` when it fails, with the error): as inputs, every dataset the run and its
  nested runs logged as MLflow inputs, each named from its source as OpenLineage's naming conventions say
  (``file`` + the folder's path, ``s3://bucket`` + the key prefix, ...), with the full content digest as its
  version, its schema, where it lives, and the leakage check's result as data-quality assertions; as outputs,
  the registered model versions those runs created.

Nothing is configured (:func:`image_lineage.core.config.openlineage_configuration`): no event, no import of the
client, no request. A lineage backend that cannot be reached is logged as a warning and never fails the run:
the MLflow run is the record, the events are a copy for other tools.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import traceback
import uuid
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Iterator

import mlflow

from image_lineage.core import config
from image_lineage.core.names import TAG_DIGEST, TAG_QUALITY_STATUS

LOGGER = logging.getLogger(__name__)


@functools.cache  # asked only when an event is made: nothing configured, no metadata lookup
def producer() -> str:
    """The producer URI events carry: a URN with the installed version (the project publishes no web address)."""
    try:
        return f"urn:python:image-lineage:{package_version('image-lineage')}"
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "urn:python:image-lineage"


CLOSE_TIMEOUT_S = 10.0  # how long the last events may take to leave a queueing transport
QUALITY_ASSERTIONS = (  # (assertion, metric): each passes when its count is 0
    ("no_leakage_between_splits", "quality/leakage_pairs"),
    ("no_exact_duplicates", "quality/exact_duplicate_pairs"),
    ("no_near_duplicates", "quality/near_duplicate_pairs"),
    ("no_label_conflicts", "quality/label_conflicts"),
)


Read = tuple  # (source fields, split, full content digest): what a flow reads, known before its run opens


@contextlib.contextmanager
def run_events(run: mlflow.ActiveRun, job: str | None, reads: list[Read] | None = None) -> Iterator[None]:
    """Send START now and COMPLETE (or FAIL) when the block ends, when a transport is configured. ``reads``: the
    datasets the flow read before the run opened (each a split's source fields, name and digest), inputs of
    every event, so that a run that fails before it logs its MLflow inputs still names what it read."""
    configured = config.openlineage_configuration() if job else None
    client = lineage_client(configured) if configured else None
    if client is None:
        yield
        return
    experiment = mlflow.MlflowClient().get_experiment(run.info.experiment_id).name
    job_name = f"{experiment}.{job}"
    send(client, "START", run.info.run_id, job_name, reads or [])
    try:
        yield
    except BaseException as exc:
        send(client, "FAIL", run.info.run_id, job_name, reads or [], error=exc)
        raise
    else:
        send(client, "COMPLETE", run.info.run_id, job_name, reads or [])
    finally:
        close(client)


def lineage_client(configured: str):
    """The ``openlineage-python`` client, configured as it configures itself; None (with a warning) when the
    package is missing or its configuration cannot make a transport: lineage never stops a run."""
    try:
        from openlineage.client import OpenLineageClient
    except ImportError:
        LOGGER.warning("OpenLineage is configured (%s) but openlineage-python is not installed: no events sent "
                       "(pip install openlineage-python).", configured)
        return None
    try:
        return OpenLineageClient()
    except Exception as exc:  # noqa: BLE001 - a transport the client cannot build (a bad openlineage.yml, ...)
        LOGGER.warning("OpenLineage is configured (%s) but its client cannot start: %s. No events sent.", configured, exc)
        return None


def close(client) -> None:
    """Let a queueing transport (``async_http``) deliver the last event before the process may exit."""
    try:
        client.close(CLOSE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - as for send: lineage never fails a run
        LOGGER.warning("OpenLineage client did not close cleanly: %s", exc)


def send(client, state: str, run_id: str, job_name: str, reads: list[Read], error: BaseException | None = None) -> None:
    """One run event; a transport that fails is logged, never raised (the run's outcome is MLflow's)."""
    try:
        client.emit(run_event(state, run_id, job_name, reads, error))
    except Exception as exc:  # noqa: BLE001 - any transport's error: HTTP, Kafka, a file that cannot be written
        LOGGER.warning("OpenLineage %s event for run %s not sent: %s", state, run_id, exc)


def run_event(state: str, run_id: str, job_name: str, reads: list[Read], error: BaseException | None = None):
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import error_message_run, job_type_job

    run_facets = {}
    if error is not None:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=str(error) or type(error).__name__, programmingLanguage="python",
            stackTrace="".join(traceback.format_exception(error)), producer=producer())
    job_facets = {"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="MLFLOW",
                                                          jobType="JOB", producer=producer())}
    inputs, outputs = ([read_input(read) for read in reads], []) if state == "START" else run_datasets(run_id, reads)
    return RunEvent(eventType=RunState[state], eventTime=datetime.now(timezone.utc).isoformat(),
                    run=Run(runId=str(uuid.UUID(hex=run_id)), facets=run_facets),
                    job=Job(namespace=config.openlineage_namespace(), name=job_name, facets=job_facets),
                    inputs=inputs, outputs=outputs, producer=producer())


def run_datasets(run_id: str, reads: list[Read]) -> tuple[list, list]:
    """(inputs, outputs) of a run and its nested runs: the datasets they logged as MLflow inputs (and those the
    flow read, when not logged), the model versions they registered."""
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    runs = [run, *client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")]
    assertions = quality_assertions(run)
    inputs = {}
    for each in runs:
        for logged in each.inputs.dataset_inputs:
            dataset = logged_input(logged, each)
            inputs.setdefault((dataset.namespace, dataset.name, dataset.facets["version"].datasetVersion), dataset)
    for read in reads:
        dataset = read_input(read, assertions)
        inputs.setdefault((dataset.namespace, dataset.name, dataset.facets["version"].datasetVersion), dataset)
    outputs = [model_output(version) for each in runs
               for version in client.search_model_versions(f"run_id = '{each.info.run_id}'")]
    return list(inputs.values()), outputs


def read_input(read: Read, assertions=None):
    """A dataset the flow read, as an OpenLineage input dataset."""
    fields, split, digest = read
    namespace, name = dataset_naming(fields, split)
    return lineage_input(namespace, name, digest, [], assertions)


def logged_input(logged, run):
    """An MLflow dataset input as an OpenLineage input dataset."""
    dataset = logged.dataset
    source = json.loads(dataset.source) if dataset.source else {}
    namespace, name = dataset_naming(source, dataset.name)
    split = next((value for key, value in ((t.key, t.value) for t in logged.tags) if key in ("split", "version")), None)
    digest = run.data.tags.get(f"{TAG_DIGEST}.{split}") or (
        run.data.tags.get(TAG_DIGEST) if len(run.inputs.dataset_inputs) == 1 else None) or dataset.digest
    return lineage_input(namespace, name, digest, schema_fields(dataset.schema), quality_assertions(run))


def lineage_input(namespace: str, name: str, version: str, fields: list[tuple[str, str]], assertions):
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import dataset_version_dataset, datasource_dataset, schema_dataset

    facets = {
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=version, producer=producer()),
        "dataSource": datasource_dataset.DatasourceDatasetFacet(name=namespace, uri=source_uri(namespace, name),
                                                                producer=producer()),
    }
    if fields:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in fields], producer=producer())
    input_facets = {"dataQualityAssertions": assertions} if assertions else {}
    return InputDataset(namespace=namespace, name=name, facets=facets, inputFacets=input_facets)


def dataset_naming(source: dict, fallback: str) -> tuple[str, str]:
    """(namespace, name) of a dataset source as OpenLineage's naming conventions write them: a local path is
    ``file`` + the absolute path, an object is ``s3://<bucket>`` + its key, a Hugging Face hub dataset
    ``huggingface`` + its id; anything else is named by its MLflow dataset name."""
    location = next((source[key] for key in ("uri", "data_dir", "images_dir", "path") if source.get(key)), "")
    location = str(location)
    if location.startswith("s3://"):
        bucket, _, key = location[len("s3://"):].partition("/")
        return f"s3://{bucket}", key.rstrip("/") or "/"
    if location.startswith("file://"):
        return "file", location[len("file://"):]
    if location.startswith("/"):
        return "file", location
    if location:  # a hub id such as user/dataset
        return "huggingface", location
    return config.openlineage_namespace(), fallback


def source_uri(namespace: str, name: str) -> str:
    return f"file://{name}" if namespace == "file" else f"{namespace}/{name}" if namespace.startswith("s3://") else namespace


def schema_fields(schema_text: str | None) -> list[tuple[str, str]]:
    """(name, type) of each column of an MLflow dataset schema (MLflow's column specs, or Hugging Face features)."""
    if not schema_text:
        return []
    schema = json.loads(schema_text)
    if "mlflow_colspec" in schema:
        return [(column.get("name", ""), str(column.get("type", ""))) for column in schema["mlflow_colspec"]]
    features = schema.get("features", schema)
    if isinstance(features, dict):
        return [(name, feature.get("_type", "") if isinstance(feature, dict) else str(feature))
                for name, feature in features.items()]
    return []


def quality_assertions(run):
    """The leakage check's result as OpenLineage data-quality assertions; None when the run ran no check."""
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dq

    if not run.data.tags.get(TAG_QUALITY_STATUS):
        return None
    metrics = run.data.metrics
    assertions = [dq.Assertion(assertion=name, success=metrics[metric] == 0, actual=str(int(metrics[metric])),
                               expected="0") for name, metric in QUALITY_ASSERTIONS if metric in metrics]
    return dq.DataQualityAssertionsDatasetFacet(assertions=assertions, producer=producer()) if assertions else None


def model_output(version):
    """A registered model version as an OpenLineage output dataset, in the model registry's namespace."""
    from openlineage.client.event_v2 import OutputDataset
    from openlineage.client.facet_v2 import dataset_type_dataset, dataset_version_dataset

    facets = {"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(version.version),
                                                                           producer=producer()),
              "datasetType": dataset_type_dataset.DatasetTypeDatasetFacet(datasetType="MODEL", producer=producer())}
    return OutputDataset(namespace=mlflow.get_registry_uri(), name=f"models/{version.name}",
                         facets=facets)
