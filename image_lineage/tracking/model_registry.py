"""Models in MLflow: the links between a model and its data, and the registry's bookkeeping.

MLflow 3's own links between a model and its data, which the UI shows and ``search_logged_models`` queries:

A model's training dataset is logged as the model's input, and its metrics with ``model_id=`` and the
``dataset=`` they were measured on (training losses on the training split, evaluation metrics on the
evaluation split). A training loop creates the LoggedModel when it starts (``start_model``), logs each
epoch's metrics against it and uploads the files at the end with ``log_model(model_id=...)``; a model
fitted in one go is logged first and linked after (``link_trained_model``). The order matters: MLflow's
``log_model`` copies the run's step-0 metrics onto the model, and one already linked at step 0 would be
copied twice (a unique-key error from the store). So the experiment's Models tab lists each model's metrics per
dataset, and ``mlflow.search_logged_models(datasets=[{"dataset_name": ..., "dataset_digest": ...}])`` finds
the models measured on a given digest.

Registry bookkeeping: descriptions, tags, and aliases assigned by measured scores. Alias rules (documented in
the README): ``baseline`` -> the version named as baseline; ``champion`` -> the highest accuracy; ``staging``
-> the second highest. Ties are broken by F1, then by the newer version.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
from mlflow.entities import LoggedModelInput

from image_lineage.core.errors import LineageError


def start_model(train_dataset, model_type: str, name: str = "model") -> str:
    """Create the LoggedModel of the active run before training, linked to its training dataset; its
    metrics must then be logged at steps from 1 (epochs). Returns its id, for ``log_model(model_id=...)``."""
    model = mlflow.initialize_logged_model(name=name, source_run_id=mlflow.active_run().info.run_id,
                                           model_type=model_type)
    link_trained_model(model.model_id, train_dataset)
    return model.model_id


def link_trained_model(model_id: str, train_dataset) -> None:
    """Record ``train_dataset`` as the model's training input."""
    mlflow.log_input(train_dataset, context="training", model=LoggedModelInput(model_id))


def log_model_metrics(model_id: str, metrics: dict, dataset, step: int | None = None) -> None:
    """Metrics of the run that are also the model's, measured on ``dataset``."""
    if metrics:
        mlflow.log_metrics(metrics, step=step, model_id=model_id, dataset=dataset)


def models_measured_on(dataset_name: str, digest_prefix: str, experiment_ids: list[str] | None = None) -> list:
    """LoggedModels with a metric measured on the dataset ``dataset_name`` with this (32-digit) digest, in
    ``experiment_ids`` (default: every active experiment; MLflow's own default is the current one only)."""
    if experiment_ids is None:
        experiment_ids = [experiment.experiment_id for experiment in mlflow.search_experiments()]
    return mlflow.search_logged_models(experiment_ids=experiment_ids, output_format="list",
                                       datasets=[{"dataset_name": dataset_name, "dataset_digest": digest_prefix}])


def model_id_of(version) -> str | None:
    """The LoggedModel behind a registered model version: its ``model_id`` field, which MLflow 3.17 leaves
    empty on versions registered through ``log_model``, else the ``models:/<model_id>`` of its source."""
    if getattr(version, "model_id", None):
        return version.model_id
    source = version.source or ""
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class VersionScore:
    version: str
    accuracy: float
    f1: float


def rank_versions(scores: list[VersionScore]) -> list[VersionScore]:
    """Best first: accuracy, then F1, then the newer version."""
    return sorted(scores, key=lambda s: (s.accuracy, s.f1, int(s.version)), reverse=True)


def assign_aliases(name: str, scores: list[VersionScore], baseline_version: str) -> dict[str, str]:
    """Point ``baseline``, ``champion`` and ``staging`` at versions of ``name``; return alias -> version."""
    ranked = rank_versions(scores)
    aliases = {"baseline": baseline_version, "champion": ranked[0].version}
    if len(ranked) > 1:
        aliases["staging"] = ranked[1].version
    client = mlflow.MlflowClient()
    for alias, version in aliases.items():
        client.set_registered_model_alias(name, alias, version)
    return aliases


def status_of(version: str, aliases: dict[str, str]) -> str:
    """The ``status`` version tag: champion, baseline or improved."""
    if aliases["champion"] == version:
        return "champion"
    return "baseline" if aliases["baseline"] == version else "improved"


def describe_model(name: str, description: str, tags: dict[str, str]) -> None:
    client = mlflow.MlflowClient()
    client.update_registered_model(name, description=description)
    for key, value in tags.items():
        client.set_registered_model_tag(name, key, value)


def tag_version(name: str, version: str, tags: dict[str, str]) -> None:
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def find_model(name: str):
    """The registered model ``name``, or a LookupError listing the registered models that exist."""
    client = mlflow.MlflowClient()
    try:
        return client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        names = sorted(m.name for m in client.search_registered_models())
        raise LineageError(f"registered model {name!r} not found; registered models: {', '.join(names) or 'none'}.") from None
