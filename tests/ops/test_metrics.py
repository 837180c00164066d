"""GET /metrics in process, on both databases: each counter moves by what the requests
did, only once their transaction commits; routes are labelled by template; who may read.

Counters belong to the test process and grow across tests, so every check compares two
scrapes. The worker processes' sum is tested with a real server in
tests/ops/test_observability_processes.py.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY, Counter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.core import metrics
from app.core.config import Settings
from app.core.logs import UNMATCHED
from app.main import create_app
from app.settlements import service as settlements
from tests.conftest import make_settings
from tests.factories import assert_problem, bearer, make_settlement, make_user, tokens_for
from tests.sync.helpers import SETTLEMENT, household, make_phone, push, visit

PUSH_ROUTE = "/api/v1/sync/push"
OTHER_SETTLEMENT = "UA6308013002"
METRICS_TOKEN = "metrics-scraper-token-" + "m" * 20

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(page: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == metrics.CONTENT_TYPE
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def label_values(samples: Samples, label: str) -> set[str]:
    return {v for (_, labels) in samples for k, v in labels if k == label}


async def test_pushes_count_batches_items_conflicts_and_pending_visits(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_settlement(session, SETTLEMENT)
    first = await make_phone(client, session, settlements=[SETTLEMENT])
    second = await make_phone(client, session, settlements=[SETTLEMENT])
    before = await scrape(client)

    known = uuid.uuid4()
    stay = visit(known, decision="stay")
    batch = first.batch(
        households=[household(known)],
        visits=[
            stay,
            visit(uuid.uuid4()),  # its household has not arrived: pending
            visit(known, outcome="no_such_outcome"),  # rejected
        ],
    )
    pushed = await push(client, first, batch)
    assert pushed.statuses() == ["applied", "applied", "pending", "rejected"], pushed.body
    assert (await push(client, first, batch)).body == pushed.body  # replayed
    reused = dict(batch, visits=[visit(known)])
    assert (await push(client, first, reused)).response.status_code == 409
    # Another worker records another decision within the window: a conflict opens; the
    # first worker's visit sent again is a duplicate.
    answer = await push(client, second, second.batch(visits=[visit(known, decision="leave"), stay]))
    assert answer.statuses() == ["conflict", "duplicate"], answer.body
    invalid = dict(second.batch(), sent_at="yesterday")
    assert (await push(client, second, invalid)).response.status_code == 422

    after = await scrape(client)
    batches = "fieldsync_push_batches_total"
    assert moved(before, after, batches, outcome="accepted") == 2
    assert moved(before, after, batches, outcome="replayed") == 1
    assert moved(before, after, batches, outcome="conflict") == 1
    assert moved(before, after, batches, outcome="refused") == 1
    assert moved(before, after, batches, outcome="retry") == 0
    items = "fieldsync_push_items_total"
    expected = {
        ("household", "applied"): 1,
        ("visit", "applied"): 1,
        ("visit", "pending"): 1,
        ("visit", "rejected"): 1,
        ("visit", "conflict"): 1,
        ("visit", "duplicate"): 1,
    }
    for kind in ("household", "visit"):
        for status in ("applied", "duplicate", "conflict", "pending", "rejected"):
            assert moved(before, after, items, kind=kind, status=status) == expected.get(
                (kind, status), 0
            ), (kind, status)
    opened = "fieldsync_conflicts_opened_total"
    assert moved(before, after, opened, kind="decision_disagreement") == 1
    assert moved(before, after, opened, kind="stale_edit") == 0
    assert value(after, "fieldsync_pending_visits") == 1  # the tables start empty
    latency = "fieldsync_http_request_duration_seconds_count"
    push_2xx = {"method": "POST", "route": PUSH_ROUTE, "status": "2xx"}
    assert moved(before, after, latency, **push_2xx) == 3
    assert moved(before, after, latency, **{**push_2xx, "status": "4xx"}) == 2


async def test_pull_pages_households_and_tombstones_are_counted(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_settlement(session, SETTLEMENT)
    await make_settlement(session, OTHER_SETTLEMENT)
    phone = await make_phone(client, session, settlements=[SETTLEMENT, OTHER_SETTLEMENT])
    items = [household(settlement=SETTLEMENT) for _ in range(3)]
    items.append(household(settlement=OTHER_SETTLEMENT))
    assert set((await push(client, phone, phone.batch(households=items))).statuses()) == {"applied"}
    before = await scrape(client)

    pages, households, cursor = 0, 0, None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/sync/pull", params=params, headers=phone.headers)
        assert response.status_code == 200, response.text
        pages += 1
        households += len(response.json()["households"])
        cursor = response.json()["cursor"]
        if not response.json()["has_more"]:
            break
    assert pages >= 2
    assert households == 4
    await settlements.unassign(
        session, phone.user.id, [OTHER_SETTLEMENT], username=phone.user.username
    )
    await session.commit()
    response = await client.get(
        "/api/v1/sync/pull", params={"cursor": cursor}, headers=phone.headers
    )
    assert response.json()["tombstones"] == [
        {"kind": "settlement", "id": OTHER_SETTLEMENT, "reason": "unassigned", "merged_into": None}
    ]
    gone = await client.get("/api/v1/sync/pull", params={"cursor": "x" * 40}, headers=phone.headers)
    assert gone.status_code == 400  # a refused pull is no page

    after = await scrape(client)
    assert moved(before, after, "fieldsync_pull_pages_total") == pages + 1
    assert moved(before, after, "fieldsync_pull_households_total") == households
    assert moved(before, after, "fieldsync_pull_tombstones_total", kind="settlement") == 1
    assert moved(before, after, "fieldsync_pull_tombstones_total", kind="household") == 0


#: Counts only for these tests; registered once, as the app's own metrics are.
PROBE = Counter("fieldsync_test_commit_probe", "Counted after a commit, in tests only.")


def _probe() -> float:
    return REGISTRY.get_sample_value("fieldsync_test_commit_probe_total") or 0.0


async def test_a_count_waits_for_the_commit_and_a_rollback_drops_it(app: FastAPI) -> None:
    start = _probe()
    async with app.state.sessionmaker() as session:
        await session.execute(text("SELECT 1"))
        metrics.count_after_commit(session, PROBE, 3)
        assert _probe() == start  # not before the commit
        await session.rollback()
        assert _probe() == start
        # The next transaction of the same session does not inherit the dropped count.
        await session.execute(text("SELECT 1"))
        await session.commit()
        assert _probe() == start
        await session.execute(text("SELECT 1"))
        metrics.count_after_commit(session, PROBE, 2)
        metrics.count_after_commit(session, PROBE)
        await session.commit()
        assert _probe() == start + 3
        await session.execute(text("SELECT 1"))
        metrics.count_after_commit(session, PROBE, 5)
    # Closed without a commit: nothing.
    assert _probe() == start + 3


async def test_routes_are_labelled_by_template_and_unknown_paths_share_one_label(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    supervisor = await make_user(session, Role.supervisor)
    headers = bearer((await tokens_for(client, supervisor))["access_token"])
    ids = [uuid.uuid4() for _ in range(3)]
    for household_id in ids:  # unknown households: 404 from a matched route
        response = await client.get(f"/api/v1/households/{household_id}", headers=headers)
        assert response.status_code == 404, response.text
    strays = [f"/api/v1/no-such-thing/{uuid.uuid4()}", "/wp-login.php", "/%00/../etc/passwd"]
    for path in strays:
        assert (await client.get(path)).status_code == 404
    assert (await client.request("PROPFIND", "/healthz")).status_code == 405
    await scrape(client)  # /metrics itself has a label from now on
    before_routes = label_values(await scrape(client), "route")
    for path in [f"/api/v1/another-stray/{uuid.uuid4()}", "/admin"]:
        assert (await client.get(path)).status_code == 404

    page = (await client.get("/metrics")).text
    routes = label_values(parse(page), "route")
    assert routes == before_routes  # new stray paths added no label value
    assert "/api/v1/households/{household_id}" in routes
    assert UNMATCHED in routes
    for household_id in ids:
        assert str(household_id) not in page
    for path in strays:
        assert path not in page
    assert "OTHER" in label_values(parse(page), "method")
    assert "PROPFIND" not in page
    assert "no-such-thing" not in page
    assert "wp-login" not in page


async def _get_metrics(
    app: FastAPI, client_host: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://fieldsync.test") as c:
        return await c.get("/metrics", headers=headers)


async def test_without_a_token_only_this_machine_may_read_the_metrics(app: FastAPI) -> None:
    assert (await _get_metrics(app, "127.0.0.1")).status_code == 200
    assert (await _get_metrics(app, "::1")).status_code == 200
    for remote in ("203.0.113.7", "2001:db8::7", "testclient"):
        response = await _get_metrics(app, remote)
        assert_problem(response, 403)
        assert "FIELDSYNC_METRICS_TOKEN" in response.json()["detail"]


async def test_behind_a_trusted_proxy_the_forwarded_client_counts(database_url: str) -> None:
    app = create_app(make_settings(database_url, trusted_proxies=["127.0.0.1"]))
    try:
        proxied = await _get_metrics(app, "127.0.0.1", {"X-Forwarded-For": "203.0.113.9"})
        assert_problem(proxied, 403)
        local = await _get_metrics(app, "127.0.0.1", {"X-Forwarded-For": "127.0.0.1"})
        assert local.status_code == 200
    finally:
        await app.state.engine.dispose()


async def test_with_a_token_every_caller_must_send_it(database_url: str) -> None:
    app = create_app(make_settings(database_url, metrics_token=METRICS_TOKEN))
    try:
        for host in ("203.0.113.7", "127.0.0.1"):
            assert_problem(await _get_metrics(app, host), 401)
            wrong = await _get_metrics(app, host, bearer(METRICS_TOKEN[:-1] + "x"))
            assert_problem(wrong, 401)
            assert wrong.headers["www-authenticate"] == "Bearer"
            basic = await _get_metrics(app, host, {"Authorization": f"Basic {METRICS_TOKEN}"})
            assert_problem(basic, 401)
            response = await _get_metrics(app, host, bearer(METRICS_TOKEN))
            assert response.status_code == 200
            assert "fieldsync_push_batches_total" in response.text
    finally:
        await app.state.engine.dispose()


def test_a_short_metrics_token_is_refused() -> None:
    with pytest.raises(ValueError, match="metrics_token"):
        make_settings("sqlite+aiosqlite:///:memory:", metrics_token="short")


async def test_the_metrics_page_comes_without_the_database() -> None:
    """During an outage the page still comes (the request counts matter most then), only
    without the pending visits, which need the database."""
    app = create_app(make_settings("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    try:
        response = await _get_metrics(app, "127.0.0.1")
    finally:
        await app.state.engine.dispose()
    assert response.status_code == 200
    samples = parse(response.text)
    assert ("fieldsync_push_batches_total", frozenset({("outcome", "accepted")})) in samples
    assert not any(name == "fieldsync_pending_visits" for name, _ in samples)


async def test_pushes_refused_by_the_body_limit_or_a_lost_database_are_counted(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    """A 413 from the body-size limit (declared or counted as it comes) and a 503 from the
    database are refused before the push's own code runs: they count all the same."""
    assert PUSH_ROUTE == metrics.PUSH_ROUTE
    await make_settlement(session, SETTLEMENT)
    phone = await make_phone(client, session, settlements=[SETTLEMENT])
    before = await scrape(client)
    too_large = b" " * (settings.batch_max_bytes + 1)

    declared = await client.post(PUSH_ROUTE, content=too_large, headers=phone.headers)
    assert_problem(declared, 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
        for start in range(0, len(too_large), 1 << 20):
            yield too_large[start : start + (1 << 20)]

    chunked = await client.post(PUSH_ROUTE, content=chunks(), headers=phone.headers)
    assert "content-length" not in chunked.request.headers
    assert_problem(chunked, 413)

    # The same app on a database nothing listens on: the phone's token checks out, reading
    # its account fails.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lost = create_app(make_settings(f"postgresql+asyncpg://fieldsync@127.0.0.1:{port}/gone"))
    transport = httpx.ASGITransport(app=lost, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as down:
            answer = await down.post(PUSH_ROUTE, json=phone.batch(), headers=phone.headers)
            assert_problem(answer, 503)
            assert (await down.get("/api/v1/auth/me", headers=phone.headers)).status_code == 503
    finally:
        await lost.state.engine.dispose()

    after = await scrape(client)
    batches = "fieldsync_push_batches_total"
    assert moved(before, after, batches, outcome="refused") == 2
    assert moved(before, after, batches, outcome="retry") == 1  # not the other route's 503
    assert moved(before, after, batches, outcome="accepted") == 0
