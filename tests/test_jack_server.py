"""bridges/jack.py: the one place jackd is started and stopped, on a real server."""

from __future__ import annotations

import glob

import pytest

from kantor.bridges.jack import JackServer, JackServerError, jack_running


def test_a_server_starts_answers_and_leaves_nothing_behind():
    with JackServer(period=256) as server:
        assert server.running() and jack_running(server.env)
        assert "system:capture_1" in server.ports()
        log_path = server._log_path
        assert log_path is not None and log_path.exists()
    assert not server.running()
    assert not glob.glob(f"/dev/shm/jack_{server.name}_*")
    assert not glob.glob(f"/dev/shm/jack_sem.*_{server.name}_*")
    assert not log_path.exists()


def test_a_missing_jackd_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(JackServerError, match="jackd is not installed"):
        JackServer().start()


def test_a_second_server_of_the_same_name_is_refused():
    with JackServer() as server:
        with pytest.raises(JackServerError, match="already runs"):
            JackServer(server.name).start(timeout=5)
        assert server.running()
