import mlflow
import pandas as pd
import pytest
from helpers import build_tree

from entrypoints import compare as compare_cli
from image_lineage.core.errors import LineageError
from image_lineage.flows.comparison import dataset_versions_table, version_key
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version


def log(data_dir, version, experiment_name, **kwargs):
    return log_folder_version(FolderVersionRequest(data_dir=str(data_dir), version=version, experiment_name=experiment_name, **kwargs))


def test_version_order():
    assert sorted(["10.0.0", "2.0.0", "1.0.0", "2.0.1"], key=version_key) == ["1.0.0", "2.0.0", "2.0.1", "10.0.0"]


def test_homework_table(bundled_images, experiment_name, server_uri, tmp_path, capsys):
    # logged out of order, and v2 twice: rows still come ordered by version, one per version
    log(bundled_images, "v2", experiment_name)
    log(bundled_images, "v1", experiment_name)
    latest_v2 = log(bundled_images, "v2", experiment_name)
    assert compare_cli.main(["--experiment", experiment_name, "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    printed = out[next(i for i, line in enumerate(out) if line.lstrip().startswith("Run Name")):]
    assert printed[0].split() == ["Run", "Name", "Version", "Total", "Images", "Cat", "Dog", "Num", "Classes", "Digest", "Diff",
                                  "Quality", "Files"]
    assert printed[1].split()[:6] == ["image_v1", "1.0.0", "2", "2", "0", "1"]
    assert printed[2].split()[:6] == ["image_v2", "2.0.0", "3", "1", "2", "2"]

    table = pd.read_csv(tmp_path / experiment_name / "dataset_versions.csv")  # a folder per experiment
    assert table[["Run Name", "Version", "Total Images", "Cat", "Dog", "Num Classes"]].values.tolist() == [
        ["image_v1", "1.0.0", 2, 2, 0, 1], ["image_v2", "2.0.0", 3, 1, 2, 2],
    ]
    assert table["Run ID"].iloc[1] == latest_v2.run_id
    assert table["Digest"].iloc[1] == latest_v2.digest[:12]
    assert table["Diff"].iloc[1] == "v1->v2: +2 -1 ~0 relabelled 0"
    # the leakage check of each version: the bundled cats (v1) and dogs (v2) are each one drawing in other colours
    assert table["Quality"].tolist() == ["duplicates (near 1)", "duplicates (near 1)"]
    assert (tmp_path / experiment_name / "dataset_versions.md").read_text().startswith("| Run Name")

    compare_run = mlflow.search_runs(experiment_names=[experiment_name], filter_string="attributes.run_name = 'compare'", output_format="list")[0]
    logged = {f.path for f in mlflow.MlflowClient().list_artifacts(compare_run.info.run_id, "compare")}
    assert logged == {"compare/dataset_versions.csv", "compare/dataset_versions.md", "compare/dataset_versions.html",
                      "compare/class_counts_per_version.png"}
    assert "<table" in (tmp_path / experiment_name / "dataset_versions.html").read_text()


def test_one_column_per_class_metric(tmp_path, experiment_name, sqlite_uri):
    root = build_tree(tmp_path, {"v1": {"bird": 1, "cat": 2}, "v2": {"bird": 1, "cat": 1, "horse": 3}})
    log(root, "v1", experiment_name)
    log(root, "v2", experiment_name)
    table = dataset_versions_table(experiment_name)
    assert list(table.columns[:6]) == ["Run Name", "Version", "Total Images", "Bird", "Cat", "Horse"]
    assert table[["Bird", "Cat", "Horse"]].values.tolist() == [[1, 2, 0], [1, 1, 3]]


def test_unknown_experiment_lists_existing(experiment_name, sqlite_uri, bundled_images, caplog):
    log(bundled_images, "v1", experiment_name)
    assert compare_cli.main(["--experiment", "no_such_experiment"]) == 2
    assert "no_such_experiment" in caplog.text and experiment_name in caplog.text
    with pytest.raises(LineageError, match="no FINISHED dataset-version runs"):
        mlflow.set_experiment("empty_one")
        dataset_versions_table("empty_one")


def test_unknown_model_lists_registered_models(sqlite_uri, experiment_name, caplog):
    from image_lineage.flows.comparison import model_versions_table

    with pytest.raises(LineageError, match="registered model 'no-such-model' not found; registered models: none"):
        model_versions_table("no-such-model")
    mlflow.set_experiment(experiment_name)
    assert compare_cli.main(["--experiment", experiment_name, "--models", "no-such-model"]) == 2
    assert "registered model 'no-such-model' not found" in caplog.text
