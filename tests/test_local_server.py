import pytest

from support.local_server import LocalServer


def test_server_that_cannot_start_reports_its_log(tmp_path):
    server = LocalServer(tmp_path, extra_args=("--no-such-flag",))
    with pytest.raises(RuntimeError, match="exited with"):
        server.start()
    assert "no-such-flag" in server.log_tail()
