"""Replies of the tracking server are acknowledged at once (see image_lineage.delayed_ack)."""

import socket

import mlflow
import pytest
from mlflow.utils import request_utils

from image_lineage import delayed_ack
from image_lineage.tracking import configure_tracking

pytestmark = pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="TCP_QUICKACK is Linux's")


def test_mlflow_rest_calls_and_uploads_read_their_replies_with_quick_acks(server_uri, experiment_name, tmp_path):
    configure_tracking(server_uri)
    before = delayed_ack.QuickAck.replies
    mlflow.set_experiment(experiment_name)
    (tmp_path / "note.txt").write_text("hello")
    with mlflow.start_run() as run:
        mlflow.log_param("p", "1")
        mlflow.log_artifact(str(tmp_path / "note.txt"))
    # set-experiment, create, log-param, the upload, update: every reply went through the quick-ACK connection
    assert delayed_ack.QuickAck.replies - before >= 5
    logged = mlflow.MlflowClient().get_run(run.info.run_id)
    assert logged.data.params == {"p": "1"} and logged.info.status == "FINISHED"
    assert [f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id)] == ["note.txt"]


def test_every_mlflow_session_gets_the_pools_once(server_uri):
    assert delayed_ack.install_quick_acks() and delayed_ack.install_quick_acks()  # idempotent
    assert request_utils._cached_get_request_session.quick_acks
    assert not hasattr(request_utils._cached_get_request_session.__wrapped__, "quick_acks")  # wrapped once
    for retries in (0, 3):  # one session per retry setting: each uses the quick-ACK pools
        session = request_utils._get_request_session(retries, 1, 0.5, frozenset({503}), True, True)
        for adapter in session.adapters.values():
            assert adapter.poolmanager.pool_classes_by_scheme is delayed_ack.POOL_CLASSES


def test_acknowledge_at_once_sets_the_option_and_ignores_closed_sockets():
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        delayed_ack.acknowledge_at_once(client)
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
    delayed_ack.acknowledge_at_once(client)  # closed: nothing raised
    delayed_ack.acknowledge_at_once(None)
