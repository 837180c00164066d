"""The guards as `fieldsync serve` runs them, over real HTTP: X-Forwarded-For from the
machine itself is not believed unless FIELDSYNC_TRUSTED_PROXIES says so (uvicorn's own
proxy headers would trust 127.0.0.1), a body is cut off at the limit whether its length
is declared or it is chunked, and every answer carries the security headers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.core.headers import API_CSP
from tests.databases import migrated_database
from tests.servers import ServerProcess

pytestmark = pytest.mark.slow

TOKEN = "/api/v1/auth/token"
FORM = {"grant_type": "password", "username": "nobody", "password": "not the password"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"FIELDSYNC_LOGIN_MAX_FAILURES_PER_ADDRESS": "1", "FIELDSYNC_MAX_BODY_BYTES": "2048"}
    with (
        migrated_database("sqlite", tmp_path_factory.mktemp("guards")) as url,
        ServerProcess(url, workers=1, env=env) as started,
    ):
        yield started


def test_x_forwarded_for_from_the_machine_itself_is_not_believed(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        first = http.post(TOKEN, data=FORM, headers={"X-Forwarded-For": "192.0.2.1"})
        second = http.post(TOKEN, data=FORM, headers={"X-Forwarded-For": "192.0.2.2"})
    assert first.status_code == 401, server.log_tail(20)
    # Believed, the second would be another client's first failure: a 401.
    assert second.status_code == 429, second.text
    assert 0 < int(second.headers["retry-after"]) <= 30


def test_bodies_are_cut_off_at_the_limit_and_answers_carry_the_headers(
    server: ServerProcess,
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"grant_type=password&username=nobody&password="
        for _ in range(10):
            yield b"x" * 1024

    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        declared = http.post(TOKEN, content=b"x" * 4096, headers={"Content-Type": "text/plain"})
        streamed = http.post(
            TOKEN, content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        missing = http.get("/api/v1/no-such-thing")

    assert "content-length" not in streamed.request.headers
    for response, status in ((declared, 413), (streamed, 413), (missing, 404)):
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["content-security-policy"] == API_CSP
        assert response.headers["cache-control"] == "no-store"
