"""trace: from an image (file, folder, sha256, or path in a version) to every dataset version, run and registered
model version that used it; checked against a brute-force scan of every manifest on the tracking server."""

import gzip
import hashlib
import json
import random
import shutil

import mlflow
import pytest
from sklearn.dummy import DummyClassifier

import image_lineage
from image_lineage.cli import main as cli_main
from image_lineage.core.errors import LineageError
from image_lineage.flows.folder_version import FolderVersionRequest, log_folder_version
from image_lineage.tracking.trace_index import TraceIndex


def photos(catsdogs_dir):
    return sorted(p for p in catsdogs_dir.rglob("*.jpg"))


def build_versions(catsdogs_dir, root):
    """12 versions of the real photos in 3 data folders: overlapping subsets, some relabelled, some removed."""
    pool = photos(catsdogs_dir)
    rng = random.Random(7)
    folders = {}
    for number in range(12):
        data_dir = root / f"data{number % 3}"
        version = data_dir / f"v{number // 3 + 1}"
        chosen = rng.sample(pool, 25)
        for photo in chosen:
            label = photo.parent.name
            if rng.random() < 0.15:  # relabelled
                label = "dog" if label == "cat" else "cat"
            (version / label).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, version / label / photo.name)
        folders[number] = (data_dir, version.name)
    return folders


def train_on(experiment, folder, model_name):
    """A user's own training run: the data logged with image_lineage, a model registered."""
    mlflow.set_experiment(experiment)
    with mlflow.start_run():
        image_lineage.log_dataset(image_lineage.from_image_folder(folder), quality_check=False)
        mlflow.sklearn.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="model",
                                 registered_model_name=model_name)


class BruteForce:
    """Every manifest of every run, scanned; then MLflow's own searches for the runs and models of each digest."""

    def __init__(self):
        client = mlflow.MlflowClient()
        self.manifests = {}  # digest -> its images' sha256s
        for run in mlflow.search_runs(search_all_experiments=True, output_format="list"):
            for path in walk(client, run.info.run_id, None):
                if path.rsplit("/", 1)[-1] in ("manifest.json", "manifest.json.gz"):
                    raw = open(client.download_artifacts(run.info.run_id, path), "rb").read()
                    manifest = json.loads(gzip.decompress(raw) if path.endswith(".gz") else raw)
                    self.manifests.setdefault(manifest["digest"], set()).update(i["sha256"] for i in manifest["images"])
        self.runs = {d: {run.info.run_id for run in image_lineage.runs_using(d)} for d in self.manifests}
        self.models = {d: {(row.Model, str(row.Version)) for row in image_lineage.models_trained_on(d).itertuples()}
                       for d in self.manifests}

    def __call__(self, sha256: str) -> tuple[set, set, set]:
        digests = {digest for digest, images in self.manifests.items() if sha256 in images}
        return (digests, set().union(*(self.runs[d] for d in digests)), set().union(*(self.models[d] for d in digests)))


def walk(client, run_id, path):
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            yield from walk(client, run_id, item.path)
        else:
            yield item.path


def test_trace_of_every_image_is_what_a_scan_of_every_manifest_finds(catsdogs_dir, tmp_path, sqlite_uri):
    folders = build_versions(catsdogs_dir, tmp_path)
    experiments = [f"trace_{name}" for name in ("a", "b", "c")]
    for number, (data_dir, version) in folders.items():
        log_folder_version(FolderVersionRequest(data_dir=str(data_dir), version=version, experiment_name=experiments[number % 3],
                                                max_samples_per_class=5, quality_check="off"))
    for number, model in ((1, "pets_a"), (4, "pets_a"), (5, "pets_b")):  # models on several versions
        data_dir, version = folders[number]
        train_on(experiments[2], data_dir / version, model)
    mlflow.MlflowClient().set_registered_model_alias("pets_a", "champion", "2")
    index = tmp_path / "trace.sqlite"
    brute_force = BruteForce()
    assert len(brute_force.manifests) == 12

    for number, photo in enumerate(photos(catsdogs_dir)):
        sha256 = hashlib.sha256(photo.read_bytes()).hexdigest()
        found = image_lineage.trace(sha256, index=index, refresh=number == 0)  # the first call brings it up to date
        digests, runs, models = brute_force(sha256)
        assert set(found.images["Version digest"]) == digests, photo
        assert set(found.runs["Run ID"]) == runs, photo
        assert set(zip(found.models["Model"], found.models["Version"])) == models, photo
        if ("pets_a", "2") in models:
            assert "champion" in set(found.models["Aliases"])
    # a photo in several versions is found under each one's path, label and split (the version folder's name, and
    # "train" where a training run logged that version)
    busiest = max(photos(catsdogs_dir), key=lambda p: len(image_lineage.trace(str(p), index=index, refresh=False).images))
    found = image_lineage.trace(str(busiest), index=index, refresh=False)
    names = {name for splits in found.images["Split"] for name in splits.split(",")}
    assert len(found.images) >= 3 and names & {"v1", "v2", "v3", "v4"} and names <= {"v1", "v2", "v3", "v4", "train"}
    assert set(found.images["Path in version"]) == {f"{label}/{busiest.name}" for label in found.images["Label"]}

    # a deleted model version drops out
    mlflow.MlflowClient().delete_model_version("pets_b", "1")
    model_photo = next(p for p in photos(catsdogs_dir)
                       if ("pets_b", "1") in brute_force(hashlib.sha256(p.read_bytes()).hexdigest())[2])
    assert ("pets_b", "1") not in set(zip(*(image_lineage.trace(model_photo, index=index).models[c]
                                            for c in ("Model", "Version"))))


def test_trace_by_folder_prefix_and_path_and_what_drops_out(catsdogs_dir, tmp_path, sqlite_uri, experiment_name):
    data = tmp_path / "pets"
    shutil.copytree(catsdogs_dir, data / "v1", ignore=shutil.ignore_patterns("*.md"))
    first = log_folder_version(FolderVersionRequest(data_dir=str(data), version="v1", experiment_name=experiment_name,
                                                    max_samples_per_class=3, quality_check="off"))
    index = tmp_path / "trace.sqlite"
    cat = sorted((data / "v1" / "cat").glob("*.jpg"))[0]
    sha256 = hashlib.sha256(cat.read_bytes()).hexdigest()
    assert list(image_lineage.trace(sha256[:10], index=index).images["sha256"]) == [sha256]
    assert list(image_lineage.trace(f"cat/{cat.name}", index=index).images["sha256"]) == [sha256]

    # a folder: which of its files were ever logged (one new photo never was)
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copyfile(cat, loose / "a.jpg")
    (loose / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    found = image_lineage.trace(loose, index=index)
    assert dict(zip(found.files["File"].map(lambda f: f.rsplit("/", 1)[-1]), found.files["Versions"])) == {
        "a.jpg": 1, "b.png": 0}  # b.png is no image the pass can read: hashed as it is, and in no version

    # v2: one more version, added by an incremental refresh that reads only its manifest
    shutil.copytree(data / "v1", data / "v2")
    shutil.copyfile(cat, data / "v2" / "dog" / "copy.jpg")
    second = log_folder_version(FolderVersionRequest(data_dir=str(data), version="v2", experiment_name=experiment_name,
                                                     max_samples_per_class=3, quality_check="off"))
    report = TraceIndex(index).refresh()
    assert (report.runs_added, report.manifests_read) == (1, 1)
    found = image_lineage.trace(cat, index=index, refresh=False)
    assert sorted(found.images["Path in version"]) == sorted([f"cat/{cat.name}", f"cat/{cat.name}", "dog/copy.jpg"])

    mlflow.delete_run(first.run_id)  # deleted: v1 drops out of the answers
    found = image_lineage.trace(cat, index=index)
    assert set(found.runs["Run ID"]) == {second.run_id} and set(found.images["Version digest"]) == {second.digest}
    mlflow.MlflowClient().restore_run(first.run_id)
    assert first.run_id in set(image_lineage.trace(cat, index=index).runs["Run ID"])

    index.write_bytes(b"not a database")  # damaged: rebuilt from the tracking server, same answer
    assert first.run_id in set(image_lineage.trace(cat, index=index).runs["Run ID"])

    with pytest.raises(LineageError, match="no such file"):
        image_lineage.trace("nothing/like/this.jpg", index=index)
    assert cli_main(["trace", str(cat), "--index", str(index)]) == 0


def test_a_coco_image_is_traced_with_the_categories_of_its_objects(bundled_coco, tmp_path, sqlite_uri, experiment_name):
    mlflow.set_experiment(experiment_name)
    with mlflow.start_run() as run:
        image_lineage.log_dataset(image_lineage.from_coco(bundled_coco), quality_check=False)
    annotation = json.loads((bundled_coco / "annotations" / "instances_train2017.json").read_text())  # the train split
    image = annotation["images"][0]
    names = {c["id"]: c["name"] for c in annotation["categories"]}
    labels = ",".join(sorted({names[a["category_id"]] for a in annotation["annotations"] if a["image_id"] == image["id"]}))
    found = image_lineage.trace(bundled_coco / "train2017" / image["file_name"], index=tmp_path / "trace.sqlite")
    assert list(zip(found.images["Path in version"], found.images["Label"])) == [(image["file_name"], labels)]
    assert list(found.runs["Run ID"]) == [run.info.run_id]
    assert list(found.images["Version digest"]) == [mlflow.get_run(run.info.run_id).data.tags["dataset.digest.train"]]


def test_a_run_resumed_after_it_was_indexed_is_read_again(catsdogs_dir, tmp_path, sqlite_uri, experiment_name):
    """A training run indexed once, then resumed (mlflow.start_run(run_id=...)) to train on one more version: the
    next refresh reads it again, so an image only that version holds leads to it."""
    from helpers import write_image

    data = tmp_path / "pets"
    shutil.copytree(catsdogs_dir, data / "v1", ignore=shutil.ignore_patterns("*.md"))
    shutil.copytree(data / "v1", data / "v2")
    only_in_v2 = data / "v2" / "cat" / "drawn.png"
    write_image(only_in_v2, seed=4242)
    for version in ("v1", "v2"):
        log_folder_version(FolderVersionRequest(data_dir=str(data), version=version, experiment_name=experiment_name,
                                                max_samples_per_class=3, quality_check="off"))
    mlflow.set_experiment(experiment_name)
    with mlflow.start_run() as run:
        image_lineage.log_dataset(image_lineage.from_image_folder(data / "v1"), quality_check=False)
    index = tmp_path / "trace.sqlite"
    assert run.info.run_id not in set(image_lineage.trace(only_in_v2, index=index).runs["Run ID"])
    with mlflow.start_run(run_id=run.info.run_id):
        image_lineage.log_dataset(image_lineage.from_image_folder(data / "v2"), quality_check=False)
    assert run.info.run_id in set(image_lineage.trace(only_in_v2, index=index).runs["Run ID"])
