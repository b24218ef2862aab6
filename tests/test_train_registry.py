import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from entrypoints import train_registry as registry_cli
from image_lineage.core.errors import DatasetError
from image_lineage.core.names import TAG_DIGEST
from image_lineage.flows.registry_lab import MNIST_MODEL, RegistryRequest, WINE_MODEL, champion_grid, run_registry_workflow
from image_lineage.tracking.model_registry import VersionScore, rank_versions, status_of
from image_lineage.tracking.model_registry import model_id_of
from image_lineage.training.digits.mnist import load_digits, read_pairs
from tests_paths import PROJECT_ROOT

MNIST_RAW = PROJECT_ROOT.parent / "shared" / "data" / "mnist" / "raw"


def test_rank_versions_breaks_ties_by_f1_then_newer_version():
    scores = [VersionScore("1", 0.9, 0.8), VersionScore("2", 0.95, 0.7),
              VersionScore("3", 0.95, 0.7), VersionScore("4", 0.9, 0.85)]
    assert [s.version for s in rank_versions(scores)] == ["3", "2", "4", "1"]


def check_aliases(name, report):
    client = mlflow.MlflowClient()
    ranked = rank_versions(report.versions)
    expected = {"baseline": report.versions[0].version, "champion": ranked[0].version, "staging": ranked[1].version}
    assert report.aliases == expected
    for alias, version in expected.items():
        assert client.get_model_version_by_alias(name, alias).version == version
    for score in report.versions:
        tags = client.get_model_version(name, score.version).tags
        assert tags["status"] == status_of(score.version, expected)
        assert len(tags[TAG_DIGEST]) == 64 and tags["model_type"]
    return expected


def test_wine_flow_end_to_end(experiment_name, server_uri):
    reports = run_registry_workflow(RegistryRequest(suite="wine", experiment_name=experiment_name))
    report = reports["wine"]
    aliases = check_aliases(WINE_MODEL, report)
    client = mlflow.MlflowClient()
    model = client.get_registered_model(WINE_MODEL)
    assert "cultivars" in model.description and model.tags["task"] == "classification"
    assert {model.tags["dataset"], model.tags["team"]} == {"sklearn-wine", "ml-platform"}

    runs = mlflow.search_runs(experiment_names=[experiment_name], filter_string="attributes.run_name LIKE 'wine_v%'",
                              order_by=["attributes.start_time ASC"], output_format="list")
    assert [r.info.run_name for r in runs] == ["wine_v1_DecisionTree", "wine_v2_RandomForest", "wine_v3_GradientBoosting"]
    measured = [r.data.metrics["accuracy"] for r in runs]
    assert report.table["Accuracy"].tolist() == [round(a, 4) for a in measured]
    assert report.table["Algorithm"].tolist() == ["DecisionTree", "RandomForest", "GradientBoosting"]
    parent_id = runs[0].data.tags["mlflow.parentRunId"]
    assert {f.path for f in client.list_artifacts(parent_id, "registry")} == {"registry/wine_versions.md", "registry/wine_versions.csv"}
    assert {d.dataset.name for d in runs[0].inputs.dataset_inputs} == {"wine_train", "wine_test"}
    # MLflow 3 lineage: each version is a LoggedModel measured on the test split, found by its digest
    (test_input,) = [d for d in runs[0].inputs.dataset_inputs if d.dataset.name == "wine_test"]
    found = mlflow.search_logged_models(experiment_ids=[runs[0].info.experiment_id], output_format="list",
                                        datasets=[{"dataset_name": "wine_test", "dataset_digest": test_input.dataset.digest}])
    versions = {model_id_of(client.get_model_version(WINE_MODEL, s.version)) for s in report.versions}
    assert versions == {m.model_id for m in found}
    accuracy = {m.key: m for m in found[0].metrics}["accuracy"]
    assert (accuracy.dataset_name, accuracy.dataset_digest) == ("wine_test", test_input.dataset.digest)

    champion = mlflow.pyfunc.load_model(f"models:/{WINE_MODEL}@champion")
    assert client.get_model_version_by_alias(WINE_MODEL, "champion").version == aliases["champion"]
    from sklearn.datasets import load_wine

    x, _ = load_wine(return_X_y=True, as_frame=True)
    assert set(champion.predict(x.head(10))) <= {0, 1, 2}
    assert len(report.predictions) == 10 and (report.predictions["predicted"] == report.predictions["actual"]).mean() >= 0.8


@pytest.mark.long(seconds=32)
@pytest.mark.skipif(not MNIST_RAW.is_dir(), reason="real MNIST digits in ../shared/data/mnist/raw are absent")
def test_mnist_on_real_digits(experiment_name, server_uri):
    data = load_digits("idx", MNIST_RAW)
    assert (len(data.x_train), len(data.x_test)) == (7000, 3000)  # the 10,000 t10k digits, split 70/30
    assert data.source == "mnist-idx:t10k"
    reports = run_registry_workflow(RegistryRequest(suite="mnist", mnist_dir=str(MNIST_RAW), epochs_scale=0.04,
                                                    experiment_name=experiment_name))
    report = reports["mnist"]
    assert report.versions[0].accuracy > 0.90  # ShallowNN, 2 epochs
    check_aliases(MNIST_MODEL, report)
    client = mlflow.MlflowClient()
    model = client.get_registered_model(MNIST_MODEL)
    assert {k: model.tags[k] for k in ("task", "dataset", "framework")} == {"task": "classification", "dataset": "mnist", "framework": "pytorch"}
    tags = client.get_model_version(MNIST_MODEL, report.versions[0].version).tags
    assert tags["model_type"] == "shallow-nn" and tags["num_parameters"] == "101770"
    assert float(tags["training_time_seconds"]) > 0

    run = mlflow.search_runs(experiment_names=[experiment_name], filter_string="attributes.run_name = 'mnist_v1_shallow-nn'",
                             output_format="list")[0]
    assert run.data.params["hidden_size_1"] == "128" and run.data.params["num_epochs"] == "2"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2]
    assert run.data.metrics["final_test_accuracy"] == pytest.approx(report.versions[0].accuracy)

    champion = mlflow.pytorch.load_model(f"models:/{MNIST_MODEL}@champion")
    probabilities = torch.softmax(champion(data.x_test[:20]), dim=1)
    assert torch.allclose(probabilities.sum(1), torch.ones(20), atol=1e-5)
    assert report.predictions["confidence"].between(0, 1).all() and len(report.predictions) == 20
    parent = mlflow.search_runs(experiment_names=[experiment_name], filter_string="attributes.run_name = 'train_registry'",
                                output_format="list")
    assert parent and any(f.path.startswith("images/mnist_champion_predictions+")
                          for f in client.list_artifacts(parent[0].info.run_id, "images"))
    assert report.table["Metric"].tolist() == ["Registered Version", "Accuracy", "Loss", "Parameters", "Training Time", "Model Size"]


def test_sklearn_digits_stand_in_runs_offline(experiment_name, sqlite_uri):
    data = load_digits("sklearn-digits")
    assert data.x_train.shape[1] == 784 and data.source == "sklearn-digits"
    code = registry_cli.main(["--suite", "mnist", "--mnist-source", "sklearn-digits", "--epochs-scale", "0.02",
                              "--experiment-name", experiment_name])
    assert code == 0
    run = mlflow.search_runs(experiment_names=[experiment_name], filter_string="attributes.run_name = 'mnist_v2_medium-deep-nn'",
                             output_format="list")[0]
    assert run.data.params["data_source"] == "sklearn-digits"


def test_missing_mnist_dir_offline_names_the_parameter(tmp_path, experiment_name, sqlite_uri, caplog):
    with pytest.raises(DatasetError, match="(?s)mnist_dir=.*download failed.*-P mnist_source=sklearn-digits"):
        load_digits("idx", tmp_path / "empty")
    assert registry_cli.main(["--suite", "mnist", "--mnist-dir", str(tmp_path / "empty"), "--experiment-name", experiment_name]) == 2
    assert "mnist_dir" in caplog.text


def test_idx_reader_pools_gz_and_plain(tmp_path):
    import gzip

    images = (MNIST_RAW / "t10k-images-idx3-ubyte")
    if not images.is_file():
        pytest.skip("real MNIST digits absent")
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(images.read_bytes()))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes((MNIST_RAW / "t10k-labels-idx1-ubyte").read_bytes())
    x, y, found = read_pairs(tmp_path)
    assert x.shape == (10000, 28, 28) and y.shape == (10000,) and found == ["train"]
    one = (1).to_bytes(4, "big")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + one + (28).to_bytes(4, "big") * 2 + bytes(784))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + one + b"\x07")
    x, y, found = read_pairs(tmp_path)
    assert found == ["train", "t10k"] and len(x) == 10001 and y[-1] == 7
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"\x07")
    with pytest.raises(DatasetError, match="truncated"):
        read_pairs(tmp_path)


def test_champion_grid_frames_wrong_predictions_in_red():
    data = load_digits("sklearn-digits")
    actual = data.y_test[:20].numpy()
    predicted = actual.copy()
    predicted[3] = (actual[3] + 1) % 10  # one wrong prediction, the fourth digit of the first row
    grid = champion_grid(data, pd.DataFrame({"predicted": predicted, "actual": actual, "confidence": 0.9}))
    side = 28 * 3
    assert grid.size == (10 * side, 2 * (side + 14))
    pixels = np.asarray(grid)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    assert red[side // 2, 3 * side].all() and red[side // 2, 3 * side + side - 1]  # both sides of the frame
    assert not red[:, : 3 * side].any() and not red[:, 4 * side :].any()  # right predictions stay unmarked
