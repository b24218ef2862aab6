"""trace at scale: 1,000,000 image records in 200 logged versions, the trace index against a brute-force scan.

Builds, in a sqlite tracking store of its own, 200 version runs the way ``log_folder_dataset`` leaves them (tags
``dataset.digest``, a ``manifest.json.gz`` of 5,000 images), with 20 registered model versions made by some of
them: each version holds 4,000 images of its own (sha256s of synthetic bytes) and the same 1,000 real photos
(../shared/data/catsdogs re-encoded with a unique stamp, written to a folder), so a real photo is in all 200
versions. Then times, in this one run:

  (a) the first index build (every manifest read once);
  (b) an incremental refresh after one more version is logged (its manifest alone);
  (c) a warm trace of one photo (in 200 versions, 200 runs), with the refresh a trace does first, and without;
  (d) a warm trace of the 1,000-photo folder;
  (e) the brute-force answer to (c) and (d): every manifest of every run downloaded and scanned, then MLflow's
      own searches for the runs of the versions found.

    python bench/trace.py [--versions 200] [--images-per-version 5000] [--photos 1000]

Goals (issue 30): (c) <= 1 s, (d) <= 3 s.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED_PHOTOS, build_folder  # noqa: E402


def timed(work):
    started = time.perf_counter()
    result = work()
    return time.perf_counter() - started, result


def manifest_bytes(digest: str, images: list[tuple[str, str]]) -> bytes:
    lines = [{"path": path, "label": path.split("/")[0], "size": 1, "sha256": sha256, "width": 1, "height": 1}
             for path, sha256 in images]
    return gzip.compress(json.dumps({"digest": digest, "num_images": len(lines), "images": lines}).encode(), 1)


def log_version(client, experiment_id: str, number: int, own: int, photos: list[tuple[str, str]], tmp: Path) -> str:
    """One version run: its own synthetic images and the real photos; returns the run id."""
    images = [(f"cat/syn_{number}_{i}.jpg", hashlib.sha256(f"image {number} {i}".encode()).hexdigest())
              for i in range(own)] + photos
    digest = hashlib.sha256("".join(sha for _, sha in sorted(images)).encode()).hexdigest()
    run = client.create_run(experiment_id, run_name=f"image_v{number}", tags={"dataset.digest": digest})
    path = tmp / "manifest.json.gz"
    path.write_bytes(manifest_bytes(digest, images))
    client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def brute_force(client, experiment_ids: list[str], sha256s: set[str]) -> tuple[set, set]:
    """(version digests holding any of ``sha256s``, runs naming them): every manifest downloaded and scanned."""
    import mlflow

    digests = set()
    for run in mlflow.search_runs(experiment_ids, output_format="list"):
        for item in client.list_artifacts(run.info.run_id):
            if item.path.startswith("manifest.json"):
                raw = Path(client.download_artifacts(run.info.run_id, item.path)).read_bytes()
                manifest = json.loads(gzip.decompress(raw) if item.path.endswith(".gz") else raw)
                if any(image["sha256"] in sha256s for image in manifest["images"]):
                    digests.add(manifest["digest"])
    runs = set()
    for digest in digests:
        runs |= {run.info.run_id for run in mlflow.search_runs(experiment_ids, f"tags.`dataset.digest` = '{digest}'",
                                                               output_format="list")}
    return digests, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--images-per-version", type=int, default=5000)
    parser.add_argument("--photos", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_trace_") as tmp:
        tmp = Path(tmp)
        os.environ.update(IMAGE_LINEAGE_CACHE_DIR=str(tmp / "cache"), MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
                          MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
        os.chdir(tmp)
        import mlflow

        import image_lineage
        from image_lineage.tracking.trace_index import TraceIndex

        folder = tmp / "photos" / "v1"
        build_folder(SHARED_PHOTOS, folder, args.photos)
        files = sorted(folder.rglob("*.jpg"))
        photos = [(f"{p.parent.name}/{p.name}", hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]
        client = mlflow.MlflowClient()
        experiment_id = client.create_experiment("trace_bench")
        own = args.images_per_version - len(photos)
        seconds, run_ids = timed(lambda: [log_version(client, experiment_id, n, own, photos, tmp) for n in range(args.versions)])
        for number, run_id in enumerate(run_ids[:: max(1, args.versions // 20)]):
            client.create_registered_model(f"model_{number}") if number % 2 == 0 else None
            client.create_model_version(f"model_{number - number % 2}", f"runs:/{run_id}/model", run_id)
        records = args.versions * args.images_per_version
        print(f"{args.versions} versions, {records:,} image records, logged in {seconds:.1f} s")

        index = tmp / "trace.sqlite"
        build, report = timed(lambda: TraceIndex(index).refresh())
        print(f"(a) first index build                      {build:8.2f} s   ({report.manifests_read} manifests, "
              f"{report.models} model versions)")
        log_version(client, experiment_id, args.versions, own, photos, tmp)
        update, report = timed(lambda: TraceIndex(index).refresh())
        print(f"(b) refresh after one new version           {update:8.2f} s   ({report.manifests_read} manifest read)")
        one = str(files[0])
        image_lineage.trace(str(files[1]), index=index)  # warm: the process has traced once (imports, caches open)
        warm, found = timed(lambda: image_lineage.trace(one, index=index))
        quiet, _ = timed(lambda: image_lineage.trace(one, index=index, refresh=False))
        print(f"(c) warm trace of one photo                 {warm:8.2f} s   ({quiet:.2f} s without the refresh; "
              f"{len(found.images)} versions, {len(found.runs)} runs, {len(found.models)} model versions)")
        image_lineage.trace(str(folder), index=index, refresh=False)  # the photos' sha256s into the record cache
        whole, found_folder = timed(lambda: image_lineage.trace(str(folder), index=index))
        print(f"(d) warm trace of the {len(files)}-photo folder       {whole:8.2f} s   "
              f"({int((found_folder.files['Versions'] > 0).sum())} of its files logged)")
        brute_one, (digests, runs) = timed(lambda: brute_force(client, [experiment_id], {photos[0][1]}))
        assert digests == set(found.images["Version digest"]) and runs == set(found.runs["Run ID"])
        brute_all, (digests_all, _) = timed(lambda: brute_force(client, [experiment_id], {sha for _, sha in photos}))
        assert digests_all == set(found_folder.images["Version digest"])
        print(f"(e) brute force: one photo {brute_one:.2f} s, the folder {brute_all:.2f} s (same answers)")
        print(f"ratio brute force / trace: one photo {brute_one / warm:.0f}x, the folder {brute_all / whole:.0f}x; "
              f"goals (c) <= 1 s: {'met' if warm <= 1 else 'MISSED'}, (d) <= 3 s: {'met' if whole <= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
