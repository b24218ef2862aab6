"""Lineage queries: which runs and models used a dataset digest, which datasets a model version used, and
a logged dataset back, refused when its data changed since."""

from __future__ import annotations

import json

import mlflow
import pandas as pd

from image_lineage.core.errors import LineageError
from image_lineage.core.names import TAG_DIGEST, digest_prefix
from image_lineage.data.kinds import reload_split
from image_lineage.tracking.model_registry import model_id_of, models_measured_on


def find_runs_by_digest(digest: str, experiment_names: list[str] | None = None) -> list[mlflow.entities.Run]:
    """Runs whose dataset inputs carry ``digest`` (full sha256 or its 32-digit prefix), oldest first."""
    prefix = digest_prefix(digest)
    return mlflow.search_runs(
        experiment_names=experiment_names,
        search_all_experiments=experiment_names is None,
        filter_string=f"datasets.digest = '{prefix}'",
        order_by=["attributes.start_time ASC"],
        output_format="list",
    )


def load_logged_dataset(run_id: str, split: str | None = None):
    """Reload the exact ``datasets.Dataset`` a run logged; fails when the data changed since.

    The run's dataset input names the source (imagefolder data_dir, COCO files, or hub path and
    revision); the reloaded data must have the digest the run recorded.
    """
    run = mlflow.get_run(run_id)
    inputs = [i for i in run.inputs.dataset_inputs if split is None or {t.key: t.value for t in i.tags}.get("split") == split]
    if not inputs:
        raise LineageError(f"run {run_id} has no dataset input{f' for split {split!r}' if split else ''}.")
    dataset = inputs[0].dataset
    loaded = reload_split(dataset.source_type, json.loads(dataset.source))
    if digest_prefix(loaded.digest) != dataset.digest:
        raise LineageError(
            f"the data behind run {run_id}'s dataset {dataset.name!r} changed since it was logged "
            f"(digest {dataset.digest} then, {digest_prefix(loaded.digest)} now)."
        )
    return loaded.dataset


def datasets_of_version(model_name: str, version: str) -> pd.DataFrame:
    """Which datasets did model version N use. MLflow 3 models first: the datasets its metrics were measured
    on (``LoggedModel.metrics``) and its training input; versions logged before that: the dataset inputs of
    the run that logged them."""
    model_version = mlflow.MlflowClient().get_model_version(model_name, str(version))
    run = mlflow.get_run(model_version.run_id)
    measured = set()
    if model_id_of(model_version):
        measured = {(m.dataset_name, m.dataset_digest) for m in mlflow.get_logged_model(model_id_of(model_version)).metrics
                    if m.dataset_name}
    rows = {}
    for i in run.inputs.dataset_inputs:
        context = {t.key: t.value for t in i.tags}.get("mlflow.data.context", "")
        native = (i.dataset.name, i.dataset.digest) in measured
        if measured and not (native or context == "training"):
            continue
        row = rows.setdefault((i.dataset.name, i.dataset.digest), {
            "Model": model_name, "Version": int(version), "Dataset": i.dataset.name, "Digest": i.dataset.digest,
            "Context": context, "Source Type": i.dataset.source_type, "Link": "model" if native else "run input"})
        row["Context"] = row["Context"] or context
    return pd.DataFrame(list(rows.values()))


def versions_trained_on(digest: str) -> pd.DataFrame:
    """Which model versions were trained on dataset digest X (full sha256 or its 32-digit prefix).

    MLflow 3 models first (``search_logged_models`` on the datasets with this digest: models whose metrics
    were measured on it), then, for versions logged before that, versions tagged with the digest and versions
    whose run logged a dataset input with it."""
    client = mlflow.MlflowClient()
    prefix = digest_prefix(digest)
    runs = mlflow.search_runs(search_all_experiments=True, filter_string=f"datasets.digest = '{prefix}'", output_format="list")
    names = {i.dataset.name for run in runs for i in run.inputs.dataset_inputs if i.dataset.digest == prefix}
    experiment_ids = sorted({run.info.experiment_id for run in runs})  # where the datasets, so the models, are
    found = {}
    for name in sorted(names):
        for model in models_measured_on(name, prefix, experiment_ids):
            for v in client.search_model_versions(f"run_id = '{model.source_run_id}'"):
                if model_id_of(v) == model.model_id:
                    found[(v.name, int(v.version))] = (v, "model")
    fallback = list(client.search_model_versions(f"tags.`{TAG_DIGEST}` = '{digest}'"))
    fallback += [v for run in runs for v in client.search_model_versions(f"run_id = '{run.info.run_id}'")]
    for v in fallback:
        found.setdefault((v.name, int(v.version)), (v, "tag or run input"))
    return pd.DataFrame([{"Model": name, "Version": number, "Run ID": v.run_id, "Link": link}
                         for (name, number), (v, link) in sorted(found.items())],
                        columns=["Model", "Version", "Run ID", "Link"])
