"""Hugging Face dataset logging: MLflow's default digest vs our content digest, same data, same server.

Builds a 20,000-row image dataset in a temp dir (re-encoded, stamped variants of ../shared/data/catsdogs),
in two forms: Arrow with the image bytes embedded (what hub datasets, parquet and ``save_to_disk`` give)
and an image folder read by the ``imagefolder`` builder (rows hold file paths). Then, in this one run, each
variant logs in its own child process (so peak memory is its own) against one local ``mlflow server``:

  default  ``mlflow.data.from_huggingface(ds)`` (MLflow computes its digest) + ``mlflow.log_input``
  ours     content digest (Arrow stream / folder manifest, cold: no hash cache, the files in the page
           cache) + ``log_input`` of ``ContentDigestDataset`` (``from_huggingface``'s class, schema from
           100 rows, not 10,000)

and prints seconds, peak anonymous-memory growth and the REST requests each sent, and the ratio ours/default.
For the image folder, ``ours_warm`` is the same with the hash cache filled by an earlier scan. Each variant
runs ``--repeats`` times (variants interleaved, each run a fresh process), after the server has gone idle;
the ratio is of the medians, with the spread of the per-round ratios. Goals: ratio <= 1.0 (image folder
cold: we read every byte), ours_warm/default <= 0.5.

    python bench/hf_logging.py [--rows 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED_PHOTOS, RequestCounter, build_folder, wait_until_idle  # noqa: E402

# ours_warm: the folder's hash cache already holds every file (it was logged or scanned before)
FORMS = {"arrow_embedded": ("default", "ours"), "imagefolder": ("default", "ours", "ours_warm")}
GOALS = {"ours": 1.0, "ours_warm": 0.5}


def current_rss_mb() -> float:
    """Anonymous resident memory (heap, Python objects, Arrow buffers) in MB. Pages of memory-mapped
    Arrow files count in plain RSS while read, yet are page cache the kernel drops at will: left out."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class RssSampler:
    """Peak resident memory while the block runs (sampled every 5 ms): the process's lifetime peak
    (ru_maxrss) would include loading the dataset, which both variants share."""

    def __enter__(self) -> "RssSampler":
        self.before = self.peak = current_rss_mb()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, current_rss_mb())

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, current_rss_mb())


def load_form(form: str, data: Path):
    import datasets

    if form == "arrow_embedded":
        return datasets.load_dataset("parquet", data_files=str(data / "rows.parquet"), split="train")
    return datasets.load_dataset("imagefolder", data_dir=str(data / "v1"), split="train")


def child(form: str, variant: str, data: Path, tracking_uri: str) -> None:
    """Log one variant; print {"seconds", "peak_mb", "requests"} as JSON."""
    from image_lineage.tracking._quick_ack import quick_acks
    from image_lineage.tracking.connection import configure_tracking

    logging.basicConfig(level=logging.WARNING)
    configure_tracking(tracking_uri)
    with quick_acks():  # as the command line runs its work (both variants)
        log_variant(form, variant, data)


def log_variant(form: str, variant: str, data: Path) -> None:
    import mlflow

    from image_lineage.data.arrow_digest import compute_arrow_digest
    from image_lineage.data.folders import scan_version
    from image_lineage.tracking.datasets import ContentDigestDataset, schema_hints_silenced

    mlflow.set_experiment(f"bench_hf_{form}")
    dataset = load_form(form, data)
    if variant == "ours_warm":  # the folder was scanned before (e.g. by log_folder_dataset): warm hash cache
        scan_version(data / "v1")
    elif variant == "ours" and form == "imagefolder":
        read_every_file(data / "v1")  # cold hash cache, files in the page cache (see the docstring)
    requests = RequestCounter()
    started = time.perf_counter()
    with requests.phase("log"), RssSampler() as memory, mlflow.start_run(run_name=f"{form}_{variant}"), \
            schema_hints_silenced():
        if variant == "default":
            logged = mlflow.data.from_huggingface(dataset, targets="label", name=form)
        else:
            # imagefolder rows are file paths: the manifest digest (cold, no hash cache) reads every file
            digest = (compute_arrow_digest(dataset) if form == "arrow_embedded"
                      else scan_version(data / "v1", use_cache=variant == "ours_warm").digest)
            logged = ContentDigestDataset(
                ds=dataset, targets="label", name=form, digest=digest[:32],
                source=mlflow.data.huggingface_dataset_source.HuggingFaceDatasetSource(path=form),
            )
        mlflow.log_input(logged, context="training")
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_mb": memory.peak - memory.before,
                      "requests": dict(requests.counts["log"])}))


def read_every_file(folder: Path) -> None:
    """Bring the folder's files into the page cache, as a copy or a download just did. This machine's kernel
    reclaims pages unused for a while (DAMON), so without it a cold run sometimes reads from disk: 1.4 s
    instead of 0.45 s, measured; MLflow's default reads no image bytes, so it is not affected either way."""
    for path in folder.rglob("*"):
        if path.is_file():
            path.read_bytes()


def build_data(root: Path, rows: int) -> float:
    """The image folder and its embedded-bytes parquet twin; returns the image megabytes."""
    import datasets

    from datasets.table import embed_table_storage

    total = build_folder(SHARED_PHOTOS, root / "v1", rows)
    folder = datasets.load_dataset("imagefolder", data_dir=str(root / "v1"), split="train")
    # what push_to_hub does: copy each file's bytes into the Arrow rows
    embedded = folder.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
    embedded.to_parquet(str(root / "rows.parquet"))
    return total / 1e6


def run_child(form: str, variant: str, data: Path, uri: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", form, variant, str(data), uri], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"{form}/{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant (the ratio uses medians)")
    parser.add_argument("--child", nargs=4, metavar=("FORM", "VARIANT", "DATA", "URI"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        form, variant, data, uri = args.child
        child(form, variant, Path(data), uri)
        return

    from tests.support.local_server import LocalServer

    with tempfile.TemporaryDirectory(prefix="bench_hf_") as tmp:
        os.environ["IMAGE_LINEAGE_CACHE_DIR"] = str(Path(tmp) / "hash_cache")  # children inherit it
        megabytes = build_data(Path(tmp), args.rows)
        print(f"dataset: {args.rows} rows, {megabytes:.0f} MB of JPEG", flush=True)
        with LocalServer(Path(tmp) / "server", workers=None) as server:
            print(f"server idle after {wait_until_idle(server.process.pid):.0f} s", flush=True)
            for form, variants in FORMS.items():
                runs = {variant: [] for variant in variants}
                for _ in range(args.repeats):  # interleaved, so a slow spell of the machine hits every variant
                    for variant in variants:
                        runs[variant].append(run_child(form, variant, Path(tmp), server.uri))
                report(form, runs)


def report(form: str, runs: dict[str, list[dict]]) -> None:
    """Each variant's median seconds (spread), peak memory and requests; each ratio to the default."""
    medians = {variant: statistics.median(r["seconds"] for r in results) for variant, results in runs.items()}
    for variant, results in runs.items():
        seconds = [r["seconds"] for r in results]
        requests = results[-1]["requests"]
        print(f"{form:<15} {variant:<10} {medians[variant]:7.2f} s (runs {', '.join(f'{x:.2f}' for x in seconds)})"
              f"   peak RssAnon +{max(r['peak_mb'] for r in results):6.0f} MB   {sum(requests.values())} requests: "
              + ", ".join(f"{count} {key.split('/')[-1]}" for key, count in sorted(requests.items())))
    for variant in list(runs)[1:]:
        per_round = [ours["seconds"] / default["seconds"] for ours, default in zip(runs[variant], runs["default"])]
        goal = GOALS["ours" if form == "arrow_embedded" else variant]
        print(f"{form:<15} ratio {variant}/default = {medians[variant] / medians['default']:.2f}   "
              f"(per round {min(per_round):.2f}-{max(per_round):.2f}; goal <= {goal})")
    print(flush=True)


if __name__ == "__main__":
    main()
