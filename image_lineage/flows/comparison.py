"""Side-by-side tables of what an experiment logged: dataset versions, model versions, and the lineage
between them ("which model versions were trained on dataset digest X", "which datasets did version N use").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Experiment
from mlflow.exceptions import MlflowException

from image_lineage.core import config
from image_lineage.core.errors import LineageError
from image_lineage.core.names import (
    TAG_DIFF, TAG_DIGEST, TAG_DVC_MATCHES, TAG_DVC_MD5, TAG_DVC_RECORDED, TAG_QUALITY_STATUS, TAG_SNAPSHOT,
)
from image_lineage.flows.lineage_page import lineage_page_html
from image_lineage.tracking.lineage import datasets_of_version
from image_lineage.tracking.model_registry import find_model
from image_lineage.tracking.runs import in_project_run, start_run
from image_lineage.tracking.snapshots import missing_holders

LOGGER = logging.getLogger(__name__)
LINEAGE_PAGES_MAX = 5  # lineage pages per model: its versions with an alias, and its newest

CLASS_METRIC_PREFIX, CLASS_METRIC_SUFFIX = "metrics.class_", "_count"


@dataclass
class CompareRequest:
    experiment: str | None = None  # None: the run's own experiment (mlflow run --experiment-name), or MLFLOW_EXPERIMENT_NAME
    models: list[str] | None = None  # registered model names; None: those with versions from the experiment
    output_dir: str = "compare_output"  # tables and plots go to <output_dir>/<experiment>/
    screenshots: bool = False
    run_name: str = "compare"


def run_compare(request: CompareRequest) -> dict:
    """The ``compare`` entry point: one run, in the experiment it compares, holding the tables and plots."""
    experiment = compared_experiment(request.experiment)  # fails before opening a run when it is wrong
    output = Path(request.output_dir) / safe_folder_name(experiment.name)  # experiments' tables never mix
    with start_run(experiment.name, request.run_name):
        return compare_experiment(experiment.name, output, request.models, request.screenshots)


def safe_folder_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"


class NoDatasetVersions(LineageError):
    """The experiment holds no FINISHED folder-version runs (compare then shows the models alone)."""


def find_experiment(name: str) -> Experiment:
    """The experiment called ``name``, or an error that lists the experiments that exist."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        names = sorted(e.name for e in mlflow.search_experiments())
        raise LineageError(f"experiment {name!r} not found; experiments: {', '.join(names) or 'none'}.")
    return experiment


def compared_experiment(requested: str | None) -> Experiment:
    """The experiment compare reads, which is also the one its run goes to: the compare run belongs with
    what it compares. Under ``mlflow run`` that is the run's experiment (``--experiment-name``); a
    ``-P experiment`` naming another one is refused before anything is logged, since the run cannot move."""
    if in_project_run():
        run_experiment = mlflow.get_experiment(mlflow.get_run(config.project_run_id()).info.experiment_id)
        if requested and requested != run_experiment.name:
            raise LineageError(
                f"compare logs its run into the experiment it compares, but `mlflow run` put this run in "
                f"{run_experiment.name!r} and -P experiment={requested}. Run it as "
                f"`mlflow run . -e compare --experiment-name {requested}` (-P experiment can then be left out)."
            )
        return run_experiment
    name = requested or config.experiment_name()
    if not name:
        raise LineageError("name the experiment to compare: --experiment <name> (or MLFLOW_EXPERIMENT_NAME).")
    return find_experiment(name)


def version_key(version: str) -> tuple:
    """Order ``1.0.0`` < ``2.0.0`` < ``10.0.0``; non-numeric parts sort after numbers, as text."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in str(version).split("."))


def dataset_versions_table(experiment_name: str) -> pd.DataFrame:
    """The latest FINISHED run of each dataset version, ordered by version, one column per class."""
    experiment = find_experiment(experiment_name)
    runs = mlflow.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'FINISHED'", order_by=["attributes.start_time ASC"]
    )
    needed = {"params.dataset_version", "metrics.total_images"}
    if runs.empty or not needed <= set(runs.columns):
        raise NoDatasetVersions(f"experiment {experiment_name!r} has no FINISHED dataset-version runs (log_folder_dataset).")
    runs = runs.dropna(subset=sorted(needed))
    runs = runs.drop_duplicates(subset=["params.dataset_name", "params.dataset_version"], keep="last")
    runs = runs.iloc[sorted(range(len(runs)), key=lambda i: version_key(runs["params.dataset_version"].iloc[i]))]
    class_columns = sorted(c for c in runs.columns if c.startswith(CLASS_METRIC_PREFIX) and c.endswith(CLASS_METRIC_SUFFIX))
    table = pd.DataFrame({"Run Name": runs["tags.mlflow.runName"], "Version": runs["params.dataset_version"]})
    table["Total Images"] = runs["metrics.total_images"].astype(int)
    for column in class_columns:
        name = column[len(CLASS_METRIC_PREFIX):-len(CLASS_METRIC_SUFFIX)]
        table[name[:1].upper() + name[1:]] = runs[column].fillna(0).astype(int)
    table["Num Classes"] = runs["params.num_classes"].astype(int)
    table["Digest"] = runs.get(f"tags.{TAG_DIGEST}", pd.Series("", index=runs.index)).fillna("").str[:12]
    if f"tags.{TAG_DVC_MD5}" in runs.columns or f"tags.{TAG_DVC_RECORDED}" in runs.columns:
        table["DVC"] = [dvc_summary(row) for _, row in runs.iterrows()]
    table["Diff"] = runs.get(f"tags.{TAG_DIFF}", pd.Series("", index=runs.index)).fillna("")
    table["Quality"] = [quality_summary(row) for _, row in runs.iterrows()]
    table["Files"] = files_column(runs)
    table["Run ID"] = runs["run_id"]
    return table.reset_index(drop=True)


def dvc_summary(run: pd.Series) -> str:
    """DVC's id of a version run's folder (12 hex digits), marked when the folder no longer matched what DVC
    recorded; empty for a folder DVC does not track."""
    now, recorded = run.get(f"tags.{TAG_DVC_MD5}"), run.get(f"tags.{TAG_DVC_RECORDED}")
    if not isinstance(recorded, str):
        return ""
    if run.get(f"tags.{TAG_DVC_MATCHES}") == "true":
        return recorded[:12]
    return f"{now[:12] if isinstance(now, str) else '?'} (changed since DVC's {recorded[:12]})"


def files_column(runs: pd.DataFrame) -> list[str]:
    """Where each run's images are stored: ``this run``, ``run <id>`` (a snapshot it links to), or
    ``MISSING: run <id> deleted`` when that run is gone (the link dangles: log the version again)."""
    holders = runs.get(f"tags.{TAG_SNAPSHOT}", pd.Series(None, index=runs.index))
    linked = [h for h in holders if isinstance(h, str) and h]
    missing = missing_holders(linked)
    for holder in sorted(missing):
        LOGGER.warning("dataset files of run(s) linked to snapshot run %s are gone: that run was deleted. Log "
                       "the version again (it then uploads its files).", holder)
    return ["this run" if not (isinstance(h, str) and h) else f"MISSING: run {h} deleted" if h in missing
            else f"run {h}" for h in holders]


QUALITY_COUNTS = {"exact": "exact_duplicate_pairs", "near": "near_duplicate_pairs", "leaking": "leakage_pairs",
                  "conflicts": "label_conflicts"}


def quality_summary(run: pd.Series) -> str:
    """The leakage check of a version run in a few words: ``clean``, ``duplicates (near 1)``, ``leakage
    (exact 2, leaking 2)``; empty for runs logged without the check."""
    status = run.get(f"tags.{TAG_QUALITY_STATUS}")
    if not isinstance(status, str):
        return ""
    counts = [f"{word} {int(run[f'metrics.quality/{key}'])}" for word, key in QUALITY_COUNTS.items()
              if run.get(f"metrics.quality/{key}", 0) > 0]
    return f"{status} ({', '.join(counts)})" if counts else status


def write_table(table: pd.DataFrame, output_dir: str | Path, stem: str) -> list[Path]:
    """Write ``<stem>.csv``, ``<stem>.md`` and ``<stem>.html``; return the paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.html"]
    table.to_csv(paths[0], index=False)
    paths[1].write_text(table.to_markdown(index=False) + "\n")
    paths[2].write_text(table.to_html(index=False, border=0) + "\n")
    return paths


def compare_datasets(experiment_name: str, output_dir: str | Path) -> pd.DataFrame:
    """Print the dataset-version table, write it as CSV, Markdown and HTML, and log them in the active run."""
    table = dataset_versions_table(experiment_name)
    print(table.drop(columns=["Run ID"]).to_string(index=False))
    for path in write_table(table, output_dir, "dataset_versions"):
        mlflow.log_artifact(str(path), "compare")
    return table


# ---------------------------------------------------------------- models and lineage

MODEL_METRICS = ("accuracy", "f1_score", "final_test_accuracy", "final_test_loss", "mAP", "mAP_50")


def model_versions_table(model_name: str) -> pd.DataFrame:
    """One row per version: algorithm, the metrics its run logged, aliases, dataset digest, run id."""
    model = find_model(model_name)
    client = mlflow.MlflowClient()
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for version in sorted(client.search_model_versions(f"name = '{model_name}'"), key=lambda v: int(v.version)):
        metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
        rows.append({
            "Version": int(version.version),
            "Algorithm": version.tags.get("model_type") or version.tags.get("model_arch", ""),
            **{name: round(metrics[name], 4) for name in MODEL_METRICS if name in metrics},
            "Aliases": ", ".join(sorted(aliases.get(str(version.version), []))),
            "Dataset Digest": version.tags.get(TAG_DIGEST, "")[:12],
            "Run ID": version.run_id,
        })
    return pd.DataFrame(rows)


def models_of_experiment(experiment_id: str) -> list[str]:
    """Registered models with at least one version logged by a run of the experiment."""
    run_ids = set(mlflow.search_runs([experiment_id], output_format="pandas")["run_id"]) if experiment_id else set()
    versions = mlflow.MlflowClient().search_model_versions(max_results=10000)
    return sorted({v.name for v in versions if v.run_id in run_ids})


def lineage_table(model_names: list[str]) -> pd.DataFrame:
    frames = [datasets_of_version(name, v.version) for name in model_names
              for v in mlflow.MlflowClient().search_model_versions(f"name = '{name}'")]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True).sort_values(["Model", "Version"]) if frames else pd.DataFrame()


def plot_dataset_classes(table: pd.DataFrame, path: Path) -> Path:
    """Class counts per dataset version, grouped bars."""
    import matplotlib.pyplot as plt

    classes = [c for c in table.columns[3:] if c not in ("Num Classes", "Digest", "Diff", "Quality", "Run ID")]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(table) * max(1, len(classes)) / 2), 3.2))
    table.set_index("Version")[classes].plot.bar(ax=ax, rot=0)
    ax.set_ylabel("images")
    ax.set_title("class counts per dataset version")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_model_metrics(name: str, table: pd.DataFrame, path: Path) -> Path | None:
    """Accuracy (or mAP) and loss per model version, side by side."""
    import matplotlib.pyplot as plt

    score = next((m for m in ("accuracy", "final_test_accuracy", "mAP") if m in table), None)
    if score is None:
        return None
    loss = "final_test_loss" if "final_test_loss" in table else None
    fig, axes = plt.subplots(1, 2 if loss else 1, figsize=(8 if loss else 4, 3), squeeze=False)
    for axis, metric in zip(axes[0], [score] + ([loss] if loss else [])):
        axis.bar(table["Version"].astype(str), table[metric], color="#4c72b0")
        axis.set_xlabel("version")
        axis.set_title(metric)
    fig.suptitle(name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare_experiment(experiment_name: str, output_dir: str | Path, model_names: list[str] | None = None,
                       screenshots: bool = False) -> dict:
    """Dataset versions, each registered model's versions, lineage, and plots: printed, written, logged;
    with ``screenshots``, PNGs of the MLflow UI too (``compare/screenshots/``)."""
    experiment = find_experiment(experiment_name)
    out = Path(output_dir)
    tables = {}
    try:
        tables["dataset_versions"] = compare_datasets(experiment_name, out)
        log_files(plot_dataset_classes(tables["dataset_versions"], out / "class_counts_per_version.png"))
    except NoDatasetVersions as exc:
        LOGGER.info("%s", exc)
    names = model_names or models_of_experiment(experiment.experiment_id)
    for name in names:
        table = model_versions_table(name)
        tables[f"model_{name}"] = table
        print(f"\n{name}\n{table.drop(columns=['Run ID']).to_string(index=False)}")
        log_files(*write_table(table, out, f"model_{name}"), plot_model_metrics(name, table, out / f"model_{name}.png"))
        log_lineage_pages(name, table, out / "lineage")
    lineage = lineage_table(names)
    if not lineage.empty:
        tables["lineage"] = lineage
        print(f"\nlineage: datasets each model version used\n{lineage.to_string(index=False)}")
        log_files(*write_table(lineage, out, "lineage"))
    if screenshots:
        tables["screenshots"] = log_screenshots(experiment, tables, names, out / "screenshots")
    return tables


def log_lineage_pages(model_name: str, table: pd.DataFrame, folder: Path) -> None:
    """The lineage page (:mod:`image_lineage.flows.lineage_page`) of each version with an alias, and of the newest,
    under ``compare/lineage/``. A page that cannot be made is a warning: the tables are compare's deliverable."""
    if table.empty:
        return
    wanted = sorted({*table.loc[table["Aliases"] != "", "Version"], table["Version"].max()})[-LINEAGE_PAGES_MAX:]
    folder.mkdir(parents=True, exist_ok=True)
    for version in wanted:
        path = folder / f"{safe_folder_name(model_name)}_v{version}.html"
        try:
            path.write_text(lineage_page_html(model_name, str(version)))
        except (LineageError, MlflowException, OSError) as exc:
            LOGGER.warning("lineage page of %s version %s not made: %s", model_name, version, exc)
            continue
        mlflow.log_artifact(str(path), "compare/lineage")


def log_screenshots(experiment: Experiment, tables: dict, model_names: list[str], folder: Path) -> dict:
    """The experiment page, a dataset run's page and the first model's page, as PNGs in ``compare/screenshots``."""
    from image_lineage.tracking.ui_screenshots import capture_ui

    datasets = tables.get("dataset_versions")
    run_id = datasets["Run ID"].iloc[-1] if datasets is not None and len(datasets) else None
    pages = capture_ui(mlflow.get_tracking_uri(), experiment.experiment_id, run_id,
                       model_names[0] if model_names else None, folder)
    mlflow.log_artifacts(str(folder), "compare/screenshots")
    return pages


def log_files(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            mlflow.log_artifact(str(path), "compare")
