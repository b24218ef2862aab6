"""Side-by-side tables of what an experiment logged: one row per dataset version."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Experiment

from image_lineage.folder_dataset import TAG_DIFF, TAG_DIGEST

LOGGER = logging.getLogger(__name__)

CLASS_METRIC_PREFIX, CLASS_METRIC_SUFFIX = "metrics.class_", "_count"


def find_experiment(name: str) -> Experiment:
    """The experiment called ``name``, or a LookupError that lists the experiments that exist."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        names = sorted(e.name for e in mlflow.search_experiments())
        raise LookupError(f"experiment {name!r} not found; experiments: {', '.join(names) or 'none'}.")
    return experiment


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
        raise LookupError(f"experiment {experiment_name!r} has no FINISHED dataset-version runs (log_folder_dataset).")
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
    table["Diff"] = runs.get(f"tags.{TAG_DIFF}", pd.Series("", index=runs.index)).fillna("")
    table["Run ID"] = runs["run_id"]
    return table.reset_index(drop=True)


def write_table(table: pd.DataFrame, output_dir: str | Path, stem: str) -> list[Path]:
    """Write ``<stem>.csv`` and ``<stem>.md``; return both paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
    table.to_csv(csv_path, index=False)
    md_path.write_text(table.to_markdown(index=False) + "\n")
    return [csv_path, md_path]


def compare_datasets(experiment_name: str, output_dir: str | Path) -> pd.DataFrame:
    """Print the dataset-version table, write it as CSV and Markdown, and log both in the active run."""
    table = dataset_versions_table(experiment_name)
    print(table.drop(columns=["Run ID"]).to_string(index=False))
    for path in write_table(table, output_dir, "dataset_versions"):
        mlflow.log_artifact(str(path), "compare")
    return table
