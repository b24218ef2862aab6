"""REST latency against a plain ``mlflow server``: MLflow's own HTTP session vs the same with quick ACKs.

A plain ``mlflow server`` runs uvicorn with 4 workers, whose connections keep Nagle's algorithm on
(uvicorn issue #3149), so each reply on a kept-alive connection waits for the client's delayed ACK
(~40 ms on Linux). :mod:`image_lineage.tracking._quick_ack` has the client acknowledge at once. This prints, in one
run, the median milliseconds of the calls a folder re-log makes, without and then with it, against the
server with 4 workers (MLflow's default) and with 1 (not affected: the control), and the ratio.

    python bench/rest_latency.py [--calls 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import wait_until_idle  # noqa: E402


def call_table(client, experiment_id: str, run_id: str, calls: int) -> dict[str, float]:
    """Median milliseconds of each call a re-log makes, ``calls`` times each."""
    from mlflow.entities import Metric, RunTag

    operations = {
        "get-experiment-by-name": lambda: client.get_experiment_by_name("latency"),
        "search-runs": lambda: client.search_runs([experiment_id], "tags.`dataset.snapshot_digest` = 'x'", max_results=1),
        "create-run": lambda: client.create_run(experiment_id),
        "log-batch": lambda: client.log_batch(run_id, metrics=[Metric("m", 1.0, 0, 0)], params=[],
                                              tags=[RunTag("t", "v")]),
        "update-run": lambda: client.update_run(run_id, "RUNNING"),
    }
    table = {}
    for name, operation in operations.items():
        operation()  # the connection is open and kept alive from here on, as in a re-log
        seconds = []
        for _ in range(calls):
            started = time.perf_counter()
            operation()
            seconds.append(time.perf_counter() - started)
        table[name] = 1000 * statistics.median(seconds)
    return table


def measure(uri: str, quick: bool, calls: int) -> dict[str, float]:
    """In this (fresh) process: the call table with MLflow's session as it comes, or with quick ACKs."""
    import contextlib

    import mlflow

    from image_lineage.tracking._quick_ack import quick_acks

    with quick_acks() if quick else contextlib.nullcontext():
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name("latency")
        experiment_id = experiment.experiment_id if experiment else client.create_experiment("latency")
        return call_table(client, experiment_id, client.create_run(experiment_id).info.run_id, calls)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--child", nargs=2, metavar=("URI", "SESSION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1] == "quick", args.calls)))
        return

    from tests.support.local_server import LocalServer

    def child(uri: str, session: str) -> dict[str, float]:
        done = subprocess.run([sys.executable, __file__, "--calls", str(args.calls), "--child", uri, session],
                              capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory(prefix="bench_latency_") as tmp:
        for workers in (None, 1):
            with LocalServer(Path(tmp) / f"server_{workers}", workers=workers) as server:
                wait_until_idle(server.process.pid)
                plain, quick = child(server.uri, "plain"), child(server.uri, "quick")
            label = "4 workers (MLflow's default)" if workers is None else "1 worker"
            print(f"mlflow server, {label}: median ms per call, {args.calls} calls each")
            for name in plain:
                print(f"  {name:<24} MLflow's session {plain[name]:7.1f}   quick ACKs {quick[name]:7.1f}   "
                      f"ratio {plain[name] / quick[name]:5.1f}")
            print(f"  {'all five':<24} MLflow's session {sum(plain.values()):7.1f}   quick ACKs "
                  f"{sum(quick.values()):7.1f}   ratio {sum(plain.values()) / sum(quick.values()):5.1f}", flush=True)


if __name__ == "__main__":
    main()
