"""The public API (``image_lineage.__all__``) from a user's own script, and the MLflow plugin registration."""

import json
import shutil
import subprocess
import sys
import textwrap

import datasets
import mlflow
import pytest
from helpers import build_real_versions, write_image
from tests_paths import PROJECT_ROOT

import image_lineage
from image_lineage.core.errors import LeakageError, LineageError
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.flows.hf_log import HfRequest, log_hf_dataset


def split_folder(catsdogs, root):
    """train/ and val/ of class folders: four cats and dogs for training, two for validation."""
    for split, picks in (("train", slice(0, 4)), ("val", slice(4, 6))):
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
            for photo in sorted((catsdogs / label).glob("*.jpg"))[picks]:
                shutil.copyfile(photo, root / split / label / photo.name)
    return root


def test_the_public_api_is_all_and_each_name_has_an_example():
    assert set(image_lineage.__all__) <= set(dir(image_lineage))
    for name in image_lineage.__all__:
        value = getattr(image_lineage, name)
        assert value.__doc__, name
        if callable(value) and not isinstance(value, type):
            assert "Example::" in value.__doc__, f"{name} has no docstring example"


def test_the_plugin_in_a_process_that_never_imports_the_package(catsdogs_dir, tmp_path):
    """``pip install`` registered the constructors and sources: a script of MLflow alone gets the folder's
    content digest, logs it, and MLflow resolves the logged source back to the same data."""
    script = textwrap.dedent(f"""
        import json, sys
        import mlflow
        mlflow.set_tracking_uri("sqlite:///{tmp_path / 'mlflow.db'}")
        pets = mlflow.data.from_image_folder({str(catsdogs_dir)!r})
        with mlflow.start_run() as run:
            mlflow.log_input(pets, context="training")
        logged = mlflow.get_run(run.info.run_id).inputs.dataset_inputs[0].dataset
        source = mlflow.data.get_source(logged)
        print(json.dumps({{"digest": logged.digest, "source": type(source).__name__, "loaded": source.load(),
                           "constructor": mlflow.data.from_coco.__module__}}))
    """)
    done = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"digest": image_lineage.from_image_folder(catsdogs_dir).digest, "source": "FolderDatasetSource",
                      "loaded": str(catsdogs_dir.resolve()), "constructor": "image_lineage.plugins"}


def test_constructors_give_the_digests_the_entry_points_log(catsdogs_dir, coco_tiny_dir, tmp_path, experiment_name,
                                                           sqlite_uri):
    versions = build_real_versions(catsdogs_dir, tmp_path / "pets")
    logged = log_folder_version(FolderVersionRequest(data_dir=str(versions), version="v2", experiment_name=experiment_name))
    assert image_lineage.from_image_folder(versions / "v2").content_digest == logged.digest
    splits = split_folder(catsdogs_dir, tmp_path / "splits")
    run_id, _ = log_hf_dataset(HfRequest(source=str(splits), experiment_name=experiment_name))
    tags = mlflow.get_run(run_id).data.tags
    folder = image_lineage.from_image_folder(splits)
    assert folder.content_digest == tags["dataset.digest"] and set(folder.df["split"]) == {"train", "validation"}
    run_id, _ = log_hf_dataset(HfRequest(source=str(coco_tiny_dir), experiment_name=experiment_name))
    val = image_lineage.from_coco(coco_tiny_dir, split="validation")
    assert val.content_digest == mlflow.get_run(run_id).data.tags["dataset.digest.validation"]
    assert val.profile["num_images"] == 80 and len(val.df) == 80


def test_from_huggingface_sees_the_pictures_mlflow_does_not(tmp_path):
    for name, seed in (("a", 1), ("b", 2)):
        write_image(tmp_path / name / "cat" / "x.png", seed=seed)
    first, second = (datasets.load_dataset("imagefolder", data_dir=str(tmp_path / n), split="train") for n in "ab")
    assert mlflow.data.from_huggingface(first).digest == mlflow.data.from_huggingface(second).digest
    assert image_lineage.from_huggingface(first).digest != image_lineage.from_huggingface(second).digest


def test_log_dataset_logs_like_the_entry_points_and_links_the_second_time(catsdogs_dir, tmp_path, experiment_name,
                                                                        server_uri):
    pets = image_lineage.from_image_folder(split_folder(catsdogs_dir, tmp_path / "pets"), name="pets")
    mlflow.set_experiment(experiment_name)
    with mlflow.start_run() as first:
        assert image_lineage.log_dataset(pets, context="training") == "clean"
    with mlflow.start_run() as second:
        image_lineage.log_dataset(pets, context="training")
    runs = [mlflow.get_run(run.info.run_id) for run in (first, second)]
    for run in runs:
        assert run.data.tags["dataset.digest"] == pets.content_digest and run.data.tags["quality.status"] == "clean"
        assert run.data.metrics["pets/train/rows_cat"] == 4 and run.data.metrics["pets/validation/rows_dog"] == 2
        (dataset_input,) = run.inputs.dataset_inputs
        assert dataset_input.dataset.digest == pets.digest and dataset_input.dataset.name == "pets"
    client = mlflow.MlflowClient()
    stored = [info.path for info in client.list_artifacts(first.info.run_id, "datasets/pets/train")]
    assert {"datasets/pets/train/samples", "datasets/pets/train/manifest.json"} <= set(stored)
    assert runs[1].data.tags["dataset.snapshot_run_id"] == first.info.run_id  # the files stored once
    assert not client.list_artifacts(second.info.run_id, "datasets")


def test_log_dataset_needs_a_run_and_fails_a_leaking_dataset(catsdogs_dir, tmp_path, experiment_name, sqlite_uri):
    root = split_folder(catsdogs_dir, tmp_path / "pets")
    with pytest.raises(LineageError, match="inside `with mlflow.start_run"):
        image_lineage.log_dataset(image_lineage.from_image_folder(root))
    copy = next((root / "train" / "cat").iterdir())
    shutil.copyfile(copy, root / "val" / "cat" / copy.name)
    report = image_lineage.check(root)
    assert report.status == "leakage" and report.pairs["leakage"].sum() == 1
    mlflow.set_experiment(experiment_name)
    with pytest.raises(LeakageError), mlflow.start_run() as run:
        image_lineage.log_dataset(image_lineage.from_image_folder(root), on_leakage="fail")
    assert mlflow.get_run(run.info.run_id).info.status == "FAILED"


def test_lineage_queries_take_every_form_of_a_digest(coco_tiny_dir, bundled_coco, experiment_name, sqlite_uri):
    """The digest as a table prints it (12), as a dataset input holds it (32) and whole (64); per split and
    combined: the same runs and models."""
    from helpers import SMALL_DETECTOR

    from image_lineage.flows.finetune import FinetuneRequest, run_finetune

    result = run_finetune(FinetuneRequest(data_dir=str(bundled_coco), experiment_name=experiment_name,
                                          register_as="api_detector", **SMALL_DETECTOR))
    tags = mlflow.get_run(result.run_id).data.tags
    for digest in (tags["dataset.digest"], tags["dataset.digest.train"]):
        for form in (digest, digest[:32], digest[:12]):
            assert [r.info.run_id for r in image_lineage.runs_using(form)] == [result.run_id], form
            models = image_lineage.models_trained_on(form)
            assert list(zip(models["Model"], models["Version"])) == [("api_detector", int(result.model_version))], form
    used = image_lineage.datasets_of("api_detector", result.model_version)
    assert {"coco_train", "coco_validation"} == set(used["Dataset"])
    with pytest.raises(LineageError, match="not a dataset digest"):
        image_lineage.runs_using("0e69")


def test_load_gives_the_data_back_and_refuses_it_once_changed(catsdogs_dir, tmp_path, experiment_name, sqlite_uri):
    versions = build_real_versions(catsdogs_dir, tmp_path / "pets")
    pets = image_lineage.from_image_folder(versions / "v2")
    mlflow.set_experiment(experiment_name)
    with mlflow.start_run() as run:
        mlflow.log_input(pets, context="training")
    (dataset_input,) = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    data = image_lineage.load(dataset_input)
    assert data.num_rows == len(pets.df) and data.features["label"].names == ["cat", "dog"]
    assert image_lineage.load(run.info.run_id).num_rows == data.num_rows
    first, second = sorted((versions / "v2" / "dog").iterdir())[:2]
    first.write_bytes(second.read_bytes())  # another picture under the same name
    with pytest.raises(LineageError, match="changed since it was logged"):
        image_lineage.load(dataset_input)
    with pytest.raises(LineageError, match="changed since it was logged"):
        mlflow.data.get_source(dataset_input.dataset).load()


@pytest.mark.parametrize("example", ["train_pytorch", "hf_datasets"])
def test_examples_run_and_answer_the_lineage_question(example, catsdogs_dir, tmp_path):
    """The examples as a user runs them, on the real photos; then examples/which_models.py finds what they
    registered (the PyTorch one) or says none was."""
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "IMAGE_LINEAGE_CACHE_DIR": str(tmp_path / "cache"),
           "PATH": __import__("os").environ["PATH"], "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "hf"), "HOME": str(tmp_path)}
    args = ["--data", str(catsdogs_dir)] + (["--epochs", "1"] if example == "train_pytorch" else [])
    done = subprocess.run([sys.executable, PROJECT_ROOT / "examples" / f"{example}.py", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = subprocess.run([sys.executable, PROJECT_ROOT / "examples" / "which_models.py", str(catsdogs_dir)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    if example == "train_pytorch":
        assert "pets-classifier        1" in answer and "logged by 1 run(s)" in answer
    else:  # the HF example logs the folder's splits (other digests): the folder itself trained nothing yet
        assert "logged by 0 run(s)" in answer and "no registered model version" in answer
