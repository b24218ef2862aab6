"""Lineage queries: which runs and models used a dataset digest, which datasets a model version used, and
a logged dataset back, refused when its data changed since."""

from __future__ import annotations

import json

import mlflow
import pandas as pd

from image_lineage.core.errors import LineageError
from image_lineage.core.names import TAG_DIGEST, digest_prefix
from image_lineage.data.kinds import combined_digest, load_splits, reload_split
from image_lineage.tracking.model_registry import model_id_of, models_measured_on


SHORTEST_DIGEST = 12  # the digest as tables print it


def normalized_digest(digest: str) -> str:
    """A digest in any form the project shows: 12 to 64 hex digits, of one split or of several combined."""
    text = str(digest).strip().lower()
    if not (SHORTEST_DIGEST <= len(text) <= 64 and all(c in "0123456789abcdef" for c in text)):
        raise LineageError(f"{digest!r} is not a dataset digest: give the sha256 the project logs (tag dataset.digest) "
                           f"or its first {SHORTEST_DIGEST} to 32 hex digits, as tables and dataset inputs show it.")
    return text


def find_runs_by_digest(digest: str, experiment_names: list[str] | None = None) -> list[mlflow.entities.Run]:
    """Runs that logged, checked or trained on the data of ``digest``, oldest first: any form of it (the full
    sha256, the 32 digits a dataset input holds, the 12 a table prints), of one split (dataset inputs) or of
    all the splits a run logged (tag ``dataset.digest``). Every experiment unless ``experiment_names``."""
    digest = normalized_digest(digest)
    inputs = (f"datasets.digest = '{digest_prefix(digest)}'" if len(digest) >= 32
              else f"datasets.digest LIKE '{digest}%'")
    found = {}
    for query in (inputs, f"tags.`{TAG_DIGEST}` LIKE '{digest}%'"):
        for run in mlflow.search_runs(experiment_names=experiment_names, search_all_experiments=experiment_names is None,
                                      filter_string=query, output_format="list"):
            found[run.info.run_id] = run
    return sorted(found.values(), key=lambda run: run.info.start_time)


def matching_inputs(run: mlflow.entities.Run, digest: str) -> list:
    """The run's dataset inputs of ``digest``: those whose own digest it is, or all when it is the run's
    combined digest (tag ``dataset.digest``)."""
    if run.data.tags.get(TAG_DIGEST, "").startswith(digest):
        return list(run.inputs.dataset_inputs)
    return [i for i in run.inputs.dataset_inputs if i.dataset.digest.startswith(digest[:32])]


def load_logged_dataset(logged, split: str | None = None):
    """The exact ``datasets.Dataset`` a run logged, reloaded from its source; refused when the data changed
    since. ``logged``: a run id (its first dataset input, or the one of ``split``), a run's ``DatasetInput``, or
    the ``mlflow.entities.Dataset`` it holds."""
    dataset = getattr(logged, "dataset", logged)
    if isinstance(dataset, str):
        run = mlflow.get_run(dataset)
        inputs = [i for i in run.inputs.dataset_inputs
                  if split is None or {t.key: t.value for t in i.tags}.get("split") == split]
        if not inputs:
            raise LineageError(f"run {dataset} has no dataset input{f' for split {split!r}' if split else ''}.")
        dataset = inputs[0].dataset
    splits = reloaded_splits(dataset.source_type, json.loads(dataset.source))
    now = digest_prefix(combined_digest({s.split: s.digest for s in splits}))
    if now != dataset.digest:
        raise LineageError(f"the data behind dataset {dataset.name!r} changed since it was logged "
                           f"(digest {dataset.digest} then, {now} now).")
    if len(splits) == 1:
        return splits[0].dataset
    import datasets

    return datasets.DatasetDict({s.split: s.dataset for s in splits})


def reloaded_splits(source_type: str, source: dict) -> list:
    """The splits behind a logged source: a folder (or ``s3://`` prefix) is read by its kind, every split of
    it (a folder version is one); any other source by the kind that wrote it."""
    if source_type == "folder" and "uri" in source:
        return load_splits(source["uri"].removeprefix("file://"))
    return [reload_split(source_type, source)]


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
    """Which model versions were trained on the data of ``digest`` (any form :func:`find_runs_by_digest` takes).

    MLflow 3 models first (``search_logged_models`` on the datasets with this digest: models whose metrics
    were measured on it), then, for versions logged before that, versions tagged with the digest and versions
    whose run logged a dataset input with it."""
    client = mlflow.MlflowClient()
    digest = normalized_digest(digest)
    runs = find_runs_by_digest(digest)
    datasets = {(i.dataset.name, i.dataset.digest) for run in runs for i in matching_inputs(run, digest)}
    experiment_ids = sorted({run.info.experiment_id for run in runs})  # where the datasets, so the models, are
    found = {}
    for name, prefix in sorted(datasets):
        for model in models_measured_on(name, prefix, experiment_ids):
            for v in client.search_model_versions(f"run_id = '{model.source_run_id}'"):
                if model_id_of(v) == model.model_id:
                    found[(v.name, int(v.version))] = (v, "model")
    fallback = list(client.search_model_versions(f"tags.`{TAG_DIGEST}` = '{digest}'")) if len(digest) == 64 else []
    fallback += [v for run in runs for v in client.search_model_versions(f"run_id = '{run.info.run_id}'")]
    for v in fallback:
        found.setdefault((v.name, int(v.version)), (v, "tag or run input"))
    return pd.DataFrame([{"Model": name, "Version": number, "Run ID": v.run_id, "Link": link}
                         for (name, number), (v, link) in sorted(found.items())],
                        columns=["Model", "Version", "Run ID", "Link"])
