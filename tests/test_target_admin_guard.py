"""/admin answers loopback clients only. The remote address is faked through Flask's test client, since
a real non-loopback client is not available in a test."""

from __future__ import annotations

import pytest

from target_server.app import create_app, state_of
from target_server.config import Config


@pytest.fixture
def app():
    app = create_app(Config(quiet=True))
    yield app
    state_of(app).stop()


@pytest.mark.parametrize("address", ["::ffff:10.1.2.3", "::ffff:0.0.0.0", "0.0.0.0", "127.0.0.1.evil", ""])
def test_admin_refuses_lookalikes_of_loopback(app, address):
    response = app.test_client().get("/admin/faults", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/admin/faults", None),
        ("POST", "/admin/faults", {"kind": "outage", "duration_s": 60}),
        ("DELETE", "/admin/faults", None),
        ("POST", "/admin/config", {"sync_work_ms": 500}),
        ("POST", "/admin/reset", None),
    ],
)
def test_admin_refuses_a_remote_client(app, method, path, body):
    client = app.test_client()
    response = client.open(path, method=method, json=body, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert response.status_code == 403
    assert "loopback" in response.get_json()["error"]
    state = state_of(app)
    assert state.control.faults.active(state.wall()) == []
    assert state.config.sync_work_ms == 10.0


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_admin_accepts_loopback_clients(app, address):
    client = app.test_client()
    response = client.post(
        "/admin/faults", json={"kind": "error", "rate": 0.5}, environ_base={"REMOTE_ADDR": address}
    )
    assert response.status_code == 201
    assert response.get_json()["fault"]["kind"] == "error"


def test_the_rest_of_the_server_answers_anyone(app):
    client = app.test_client()
    response = client.get("/stats", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert response.status_code == 200
    assert "X-Server-Lag-Ms" in response.headers
