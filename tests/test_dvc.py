"""DVC interop: a DVC-tracked folder's run carries the md5 `dvc add` / `dvc repro` record for it, computed as DVC
does (checked against the dvc package itself), and a folder changed since is logged with a warning, never under
the recorded id."""

import shutil
import subprocess
import sys

import mlflow
import pytest
import yaml

from entrypoints import log_folder_dataset as folder_cli
from image_lineage.data import dvc as dvc_ids
from image_lineage.flows.comparison import dataset_versions_table

pytest.importorskip("dvc", reason="the test extra installs dvc")


def dvc(*args, cwd):
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, check=True, capture_output=True)


def dvc_repo(tmp_path, catsdogs_dir):
    """A DVC repository (no git) holding the real photos in data/v1, with a text file of CRLF lines and a
    hidden file beside them (DVC counts both; the image pass ignores them)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    dvc("init", "--no-scm", cwd=repo)
    shutil.copytree(catsdogs_dir, repo / "data" / "v1")
    (repo / "data" / "v1" / "notes.txt").write_bytes(b"two classes\r\nfrom ../shared\r\n")
    (repo / "data" / "v1" / "cat" / ".DS_Store").write_bytes(b"\x00\x01finder")
    return repo


def log(data, experiment, run_name):
    assert folder_cli.main(["--data-dir", str(data), "--version", "v1", "--experiment-name", experiment,
                            "--run-name", run_name, "--max-samples-per-class", "3"]) == 0
    (run,) = mlflow.search_runs(experiment_names=[experiment], filter_string=f"run_name = '{run_name}'",
                                output_format="list")
    return run.data.tags


def recorded_md5(dvc_file):
    (out,) = yaml.safe_load(dvc_file.read_text())["outs"]
    return out["md5"]


def test_a_dvc_tracked_folder_logs_dvcs_own_id_and_a_changed_one_a_warning(catsdogs_dir, tmp_path, sqlite_uri,
                                                                           experiment_name, monkeypatch):
    repo = dvc_repo(tmp_path, catsdogs_dir)
    dvc("add", "data/v1", cwd=repo)
    monkeypatch.chdir(repo)
    tags = log(repo / "data", experiment_name, "tracked")
    assert tags["dvc.md5"] == tags["dvc.recorded_md5"] == recorded_md5(repo / "data" / "v1.dvc")
    assert tags["dvc.matches"] == "true" and tags["dvc.tracked_by"] == "data/v1.dvc" and "dvc.warning" not in tags

    # a photo replaced by another's bytes: the run names the folder's id now, which is what `dvc add` records next
    cats = sorted((repo / "data" / "v1" / "cat").glob("*.jpg"))
    cats[0].unlink()  # DVC's copy of the file may be a link into its cache: write a new file, not into that one
    shutil.copyfile(cats[1], cats[0])
    changed = log(repo / "data", experiment_name, "changed")
    assert changed["dvc.matches"] == "false" and changed["dvc.recorded_md5"] == tags["dvc.md5"]
    assert "no longer matches data/v1.dvc" in changed["dvc.warning"]
    dvc("add", "data/v1", cwd=repo)
    assert changed["dvc.md5"] == recorded_md5(repo / "data" / "v1.dvc") != tags["dvc.md5"]

    table = dataset_versions_table(experiment_name)
    assert list(table["DVC"]) == [f"{changed['dvc.md5'][:12]} (changed since DVC's {tags['dvc.md5'][:12]})"]


def test_a_folder_a_dvc_stage_writes_is_found_in_dvc_lock(catsdogs_dir, tmp_path, sqlite_uri, experiment_name,
                                                           monkeypatch):
    repo = dvc_repo(tmp_path, catsdogs_dir)
    shutil.move(repo / "data" / "v1", repo / "raw")
    dvc("stage", "add", "-n", "prepare", "-d", "raw", "-o", "prepared/v1", "cp", "-r", "raw", "prepared/v1",
        cwd=repo)
    (repo / "prepared").mkdir()
    dvc("repro", cwd=repo)
    (stage,) = yaml.safe_load((repo / "dvc.lock").read_text())["stages"].values()
    monkeypatch.chdir(repo)
    tags = log(repo / "prepared", experiment_name, "staged")
    assert tags["dvc.md5"] == stage["outs"][0]["md5"] and tags["dvc.matches"] == "true"
    assert tags["dvc.tracked_by"] == "dvc.lock"


def test_an_untracked_folder_has_no_dvc_tags(catsdogs_dir, tmp_path, sqlite_uri, experiment_name):
    shutil.copytree(catsdogs_dir, tmp_path / "data" / "v1")
    assert not [tag for tag in log(tmp_path / "data", experiment_name, "plain") if tag.startswith("dvc.")]


def test_dvc_2_outputs_hash_text_files_with_lf_line_ends_as_dvc_data_does(tmp_path):
    from dvc_data.hashfile.hash import file_md5  # the reference: dvc's own hashing

    folder = tmp_path / "v1"
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "notes.txt").write_bytes(b"a\r\nb\r\n" * 1000)
    (folder / "docs" / "blob.bin").write_bytes(b"\x00\r\n" * 1000)
    expected = {f"docs/{p.name}": file_md5(str(p), name="md5-dos2unix") for p in (folder / "docs").iterdir()}
    assert {f: dvc_ids.file_md5(folder / f, "md5-dos2unix") for f in expected} == expected
    assert dvc_ids.file_md5(folder / "docs/notes.txt", "md5") != expected["docs/notes.txt"]  # DVC 3: bytes as they are
    (tmp_path / "v1.dvc").write_text(f"outs:\n- md5: {dvc_ids.dir_md5(expected)}\n  path: v1\n")  # no hash: DVC 2
    status = dvc_ids.folder_status(folder, dict, None)
    assert status.recorded.hash_name == "md5-dos2unix" and status.matches == "true"

    (folder / ".dvcignore").write_text("*.bin\n")  # patterns this module does not apply: unknown, not a wrong id
    status = dvc_ids.folder_status(folder, dict, None)
    assert status.matches == "unknown" and ".dvcignore" in status.why


def test_done_when_one_run_of_a_dvc_tracked_version_speaks_all_three(catsdogs_dir, tmp_path, sqlite_uri,
                                                                     experiment_name, monkeypatch):
    """Issue 29's "done when": one log_folder_dataset run of a DVC-tracked version of the real photos holds a
    croissant.json mlcroissant loads and iterates, sends two OpenLineage events the client's model accepts to a
    receiver on a loopback port, and carries the md5 `dvc add` recorded."""
    mlcroissant = pytest.importorskip("mlcroissant")
    pytest.importorskip("openlineage.client")
    from support.lineage_receiver import LineageReceiver, check_event

    from image_lineage.cli import main as cli_main

    repo = dvc_repo(tmp_path, catsdogs_dir)
    (repo / "data" / "v1" / "notes.txt").unlink()  # the version is the photos (DVC still counts its .DS_Store)
    dvc("add", "data/v1", cwd=repo)
    monkeypatch.chdir(repo)
    with LineageReceiver() as receiver:
        monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
        tags = log(repo / "data", experiment_name, "all_three")
    assert tags["dvc.md5"] == recorded_md5(repo / "data" / "v1.dvc") and tags["dvc.matches"] == "true"
    events = [check_event(e["event"]) for e in receiver.events]
    assert [e.eventType.value for e in events] == ["START", "COMPLETE"]
    assert events[1].inputs[0].facets["version"].datasetVersion == tags["dataset.digest"]
    (run,) = mlflow.search_runs(experiment_names=[experiment_name], output_format="list")
    assert cli_main(["download", "--run-id", run.info.run_id, "--destination", str(tmp_path / "back"), "--croissant"]) == 0
    dataset = mlcroissant.Dataset(str(tmp_path / "back" / "croissant.json"))
    assert not dataset.metadata.issues.errors
    assert len(list(dataset.records("images"))) == len(list((repo / "data" / "v1").rglob("*.jpg")))


def test_a_dvcignore_at_the_repository_root_makes_the_id_unknown_not_wrong(tmp_path):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvcignore").write_text("*.txt\n")
    folder = tmp_path / "data" / "images"
    folder.mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"\x00image")
    (folder / "notes.txt").write_text("left out by DVC\n")
    (tmp_path / "data" / "images.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  hash: md5\n"
                                                  "  path: images\n")
    status = dvc_ids.folder_status(folder, dict, None)
    assert status.matches == "unknown" and str(tmp_path / ".dvcignore") in status.why
