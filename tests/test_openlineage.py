"""OpenLineage events: with a transport configured (OPENLINEAGE_URL), a run that logs, checks or trains on a dataset
sends START and COMPLETE (or FAIL) to it, with the dataset (version = content digest, schema, the leakage
check as assertions) as input; without one, nothing is sent and the client is not even imported."""

import shutil
import subprocess
import sys
import uuid

import mlflow
import pytest

from entrypoints import check_dataset as check_cli
from entrypoints import log_folder_dataset as folder_cli
from support.lineage_receiver import LineageReceiver, check_event
from tests_paths import PROJECT_ROOT

pytest.importorskip("openlineage.client", reason="the test extra installs openlineage-python")


@pytest.fixture
def receiver(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no openlineage.yml of the checkout's
    monkeypatch.delenv("OPENLINEAGE_CONFIG", raising=False)
    with LineageReceiver() as receiver:
        monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
        yield receiver


def only_run(experiment):
    (run,) = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    return run


def test_a_version_run_sends_start_and_complete_with_the_dataset_as_input(catsdogs_dir, tmp_path, sqlite_uri,
                                                                         experiment_name, receiver):
    data = tmp_path / "pets"
    shutil.copytree(catsdogs_dir, data / "v1", ignore=shutil.ignore_patterns("*.md"))
    assert folder_cli.main(["--data-dir", str(data), "--version", "v1", "--experiment-name", experiment_name,
                            "--max-samples-per-class", "3"]) == 0
    run = only_run(experiment_name)
    assert [e["path"] for e in receiver.events] == ["/api/v1/lineage"] * 2
    start, complete = (check_event(e["event"]) for e in receiver.events)
    assert (start.eventType.value, complete.eventType.value) == ("START", "COMPLETE")
    assert start.run.runId == complete.run.runId == str(uuid.UUID(hex=run.info.run_id))
    assert complete.job.namespace == "image_lineage" and complete.job.name == f"{experiment_name}.log_folder_dataset"
    (dataset,) = complete.inputs
    assert [(d.namespace, d.name, d.facets["version"].datasetVersion) for d in start.inputs] == [
        (dataset.namespace, dataset.name, dataset.facets["version"].datasetVersion)]  # known before the run opened
    assert (dataset.namespace, dataset.name) == ("file", str((data / "v1").resolve()))
    assert dataset.facets["version"].datasetVersion == run.data.tags["dataset.digest"]  # the full sha256
    assert {f.name for f in dataset.facets["schema"].fields} >= {"path", "label", "sha256"}
    assertions = {a.assertion: a.success for a in dataset.inputFacets["dataQualityAssertions"].assertions}
    # the real photos hold a true copy (a grayscale dog): the check says so, and so does the event
    duplicates = run.data.metrics["quality/near_duplicate_pairs"] + run.data.metrics["quality/exact_duplicate_pairs"]
    assert assertions["no_leakage_between_splits"] is True
    assert (assertions["no_near_duplicates"] and assertions["no_exact_duplicates"]) is (duplicates == 0)
    assert not complete.outputs


def test_a_failed_check_sends_fail_with_the_error(catsdogs_dir, tmp_path, sqlite_uri, experiment_name, receiver):
    source = tmp_path / "leaky"
    shutil.copytree(catsdogs_dir, source / "train", ignore=shutil.ignore_patterns("*.md"))
    (source / "val" / "cat").mkdir(parents=True)
    leaked = sorted((source / "train" / "cat").glob("*.jpg"))[0]
    shutil.copyfile(leaked, source / "val" / "cat" / leaked.name)
    assert check_cli.main(["--source", str(source), "--on-leakage", "fail", "--experiment-name", experiment_name]) != 0
    run = only_run(experiment_name)
    assert run.info.status == "FAILED"
    start, fail = (check_event(e["event"]) for e in receiver.events)
    assert (start.eventType.value, fail.eventType.value) == ("START", "FAIL")
    assert "leak" in fail.run.facets["errorMessage"].message.lower()
    assert fail.job.name == f"{experiment_name}.check_dataset"
    versions = {(d.namespace, d.name): d.facets["version"].datasetVersion for d in fail.inputs}
    assert versions == {("file", str(source / "train")): run.data.tags["dataset.digest.train"],
                        ("file", str(source / "val")): run.data.tags["dataset.digest.validation"]}
    (verdict,) = {a.success for d in fail.inputs for a in d.inputFacets["dataQualityAssertions"].assertions
                  if a.assertion == "no_leakage_between_splits"}
    assert verdict is False


def test_without_a_transport_nothing_is_sent_and_the_client_is_not_imported(tmp_path, bundled_images):
    """In a fresh process (the suite itself has imported the client): a log with no OpenLineage setting."""
    code = ("import sys; from entrypoints import log_folder_dataset as c; "
            f"assert c.main(['--data-dir', {str(bundled_images)!r}, '--version', 'v1', '--experiment-name', 'e']) == 0; "
            "print(sorted(m for m in sys.modules if m.startswith('openlineage')))")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OPENLINEAGE")}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}", PYTHONPATH=str(PROJECT_ROOT),
               HOME=str(tmp_path))  # no ~/.openlineage/openlineage.yml
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_training_run_names_its_data_as_inputs_and_its_registered_model_as_output(bundled_coco, sqlite_uri,
                                                                                    experiment_name, receiver):
    from helpers import SMALL_DETECTOR
    from image_lineage.flows.finetune import FinetuneRequest, run_finetune

    result = run_finetune(FinetuneRequest(data_dir=str(bundled_coco), experiment_name=experiment_name, epochs=1,
                                          register_as=f"det_{experiment_name}", **SMALL_DETECTOR))
    run = mlflow.get_run(result.run_id)
    start, complete = (check_event(e["event"]) for e in receiver.events)
    assert (start.eventType.value, complete.eventType.value) == ("START", "COMPLETE")
    assert complete.job.name == f"{experiment_name}.coco_finetune"
    assert sorted(d.facets["version"].datasetVersion for d in complete.inputs) == sorted(
        run.data.tags[f"dataset.digest.{split}"] for split in ("train", "validation"))
    (model,) = complete.outputs
    assert (model.name, model.facets["version"].datasetVersion) == (f"models/det_{experiment_name}",
                                                                   str(result.model_version))
    assert model.facets["datasetType"].datasetType == "MODEL"
