"""`thinktune serve` on a port it cannot bind (issue 21, point 6): it printed "serving … Ctrl-C to stop", then uvicorn's
raw "Errno 98", exit 3. Now: one line naming the port and what to do, exit 1, before any model is loaded."""

import socket

import pytest
from typer.testing import CliRunner

from thinktune.cli import app
from thinktune.errors import ThinktuneError
from thinktune.serve import check_port


def test_a_busy_port_is_one_line_before_the_model_loads(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        # the model does not even exist: the port is checked first
        res = CliRunner().invoke(app, ["serve", str(tmp_path / "nothing"), "--port", str(port)],
                                 env={"COLUMNS": "300"})
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == [f"error: port {port} on 127.0.0.1 is already in use: stop the server using it or choose "
                     "another with --port"], res.output


def test_a_free_port_passes_and_a_bad_host_is_one_line():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    check_port("127.0.0.1", free)
    with pytest.raises(ThinktuneError, match="cannot bind no-such-host.invalid:8000"):
        check_port("no-such-host.invalid", 8000)
