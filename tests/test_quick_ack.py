"""Replies of the tracking server are acknowledged at once inside the commands' work, and nowhere else
(see image_lineage.tracking._quick_ack)."""

import socket

import mlflow
import pytest
from mlflow.utils import request_utils

from image_lineage.tracking._quick_ack import POOL_CLASSES, QuickAck, acknowledge_at_once, quick_acks
from image_lineage.tracking.connection import configure_tracking

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")


def log_a_run(experiment_name, tmp_path) -> str:
    mlflow.set_experiment(experiment_name)
    (tmp_path / "note.txt").write_text("hello")
    with mlflow.start_run() as run:
        mlflow.log_param("p", "1")
        mlflow.log_artifact(str(tmp_path / "note.txt"))
    return run.info.run_id


def test_mlflow_rest_calls_and_uploads_read_their_replies_with_quick_acks_inside_the_block(server_uri, experiment_name,
                                                                                            tmp_path):
    configure_tracking(server_uri)
    before = QuickAck.replies
    with quick_acks() as active:
        run_id = log_a_run(experiment_name, tmp_path)
    assert active
    # set-experiment, create, log-param, the upload, update: every reply went through the quick-ACK connection
    assert QuickAck.replies - before >= 5
    logged = mlflow.MlflowClient().get_run(run_id)
    assert logged.data.params == {"p": "1"} and logged.info.status == "FINISHED"
    assert [f.path for f in mlflow.MlflowClient().list_artifacts(run_id)] == ["note.txt"]
    after = QuickAck.replies
    log_a_run(experiment_name, tmp_path / "..")  # outside the block: MLflow's own connections again
    assert QuickAck.replies == after


def test_the_block_leaves_mlflow_as_it_was(server_uri):
    factory = request_utils._cached_get_request_session
    settings = [(retries, 1, 0.5, frozenset({503}), True, True) for retries in (0, 3)]
    with quick_acks():
        assert request_utils._cached_get_request_session is not factory
        for setting in settings:  # one session per retry setting: each uses the quick-ACK pools
            session = request_utils._get_request_session(*setting)
            assert all(a.poolmanager.pool_classes_by_scheme is POOL_CLASSES for a in session.adapters.values())
    assert request_utils._cached_get_request_session is factory
    for setting in settings:  # the same cached sessions, their pools back to urllib3's
        session = request_utils._get_request_session(*setting)
        assert all(a.poolmanager.pool_classes_by_scheme is not POOL_CLASSES for a in session.adapters.values())


def test_acknowledge_at_once_sets_the_option_and_ignores_closed_sockets():
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        acknowledge_at_once(client)
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
    acknowledge_at_once(client)  # closed: nothing raised
    acknowledge_at_once(None)
