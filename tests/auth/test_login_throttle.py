"""Login throttling: failed sign-ins per username and per client address, locks that
double, shared through the database by every server, and answers that never tell
whether an account exists.

The limiter's clock is a fake one the tests move forward: no test sleeps. Limits are
small: 2 failures per username, 3 per address, locks of 10 s doubling up to 25 s,
forgotten 60 s after the last. Passwords are hashed with argon2 at its cheapest here
(the accounts' and the one an unknown username is checked against): these tests count
attempts, and the server's own cost would make each check take a tenth of a second
or more.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.models import LoginThrottle, Role, User
from app.auth.throttle import ThrottlePolicy, address_key
from app.core import security
from app.core.config import Environment, Settings
from app.main import create_app
from tests.conftest import make_settings
from tests.factories import (
    PASSWORD,
    assert_problem,
    audit_events,
    make_device,
    make_user,
    read_fresh,
)

BAD_CREDENTIALS = "Incorrect username or password."
WRONG_PASSWORD = "not the password"
LIMITS: dict[str, object] = {
    "login_max_failures_per_username": 2,
    "login_max_failures_per_address": 3,
    "login_lockout_seconds": 10,
    "login_lockout_max_seconds": 25,
    "login_failure_window_seconds": 60,
}


CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, **LIMITS)


@pytest.fixture(autouse=True)
def cheap_unknown_username_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "_DUMMY_HASH", CHEAP.hash("dummy"))


async def make_account(session: AsyncSession, role: Role = Role.supervisor) -> User:
    """A supervisor (or `role`) whose password (PASSWORD) is cheap to check."""
    user = await make_user(session, role)
    user.password_hash = CHEAP.hash(PASSWORD)
    await session.commit()
    return user


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(app: FastAPI) -> FakeClock:
    fake = FakeClock(datetime.now(UTC))
    app.state.login_limiter.clock = fake
    return fake


@pytest.fixture
async def from_address(app: FastAPI) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """A client of `app` (or of another app) whose requests come from `address`."""
    opened: list[httpx.AsyncClient] = []

    def client(address: str, on: FastAPI | None = None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=on or app, client=(address, 40000))
        opened.append(httpx.AsyncClient(transport=transport, base_url="http://fieldsync.test"))
        return opened[-1]

    yield client
    for c in opened:
        await c.aclose()


async def attempt(
    client: httpx.AsyncClient,
    username: str,
    password: str = WRONG_PASSWORD,
    headers: dict[str, str] | None = None,
    client_id: uuid.UUID | None = None,
) -> httpx.Response:
    form = {"username": username, "password": password, "grant_type": "password"}
    if client_id is not None:
        form["client_id"] = str(client_id)
    return await client.post("/api/v1/auth/token", data=form, headers=headers)


def assert_throttled(response: httpx.Response, seconds: int) -> None:
    """The 429: a problem document, with Retry-After in whole seconds, saying no more."""
    body = assert_problem(
        response, 429, f"Too many failed sign-ins. Try again in {seconds} seconds."
    )
    assert set(body) == {"type", "title", "status", "detail", "instance"}
    assert response.headers["retry-after"] == str(seconds)
    assert "www-authenticate" not in response.headers


@pytest.fixture
async def second_server(settings: Settings, clock: FakeClock) -> AsyncIterator[FastAPI]:
    """Another app on the same database, as another server process would be."""
    other = create_app(settings)
    other.state.login_limiter.clock = clock
    try:
        yield other
    finally:
        await other.state.engine.dispose()


async def test_a_username_is_locked_after_its_limit_from_any_address_on_any_server(
    session: AsyncSession,
    clock: FakeClock,
    from_address: Callable[..., httpx.AsyncClient],
    second_server: FastAPI,
) -> None:
    user = await make_account(session)

    first = await attempt(from_address("192.0.2.1"), user.username)
    second = await attempt(from_address("192.0.2.2", second_server), user.username)
    assert_problem(first, 401, BAD_CREDENTIALS)
    assert_problem(second, 401, BAD_CREDENTIALS)

    # Locked for every address and both servers, even with the right password (unchecked).
    for client in (from_address("192.0.2.3", second_server), from_address("192.0.2.4")):
        assert_throttled(await attempt(client, user.username, PASSWORD), 10)
    clock.advance(4)
    assert_throttled(await attempt(from_address("192.0.2.5"), user.username, PASSWORD), 6)

    assert len(await audit_events(session, "auth.login_failed")) == 2  # 429s are not failures
    [lockout] = await audit_events(session, "auth.lockout")
    assert (lockout.entity_type, lockout.entity_id) == ("user", str(user.id))
    assert lockout.actor_username == user.username
    assert lockout.after == {
        "scope": "username",
        "address": "192.0.2.2",
        "failures": 2,
        "locked_until": (clock.now - timedelta(seconds=4) + timedelta(seconds=10)).isoformat(),
    }
    assert lockout.reason == "2 failed sign-ins for this username: locked for 10 s."

    clock.advance(6)
    response = await attempt(from_address("192.0.2.6"), user.username, PASSWORD)
    assert response.status_code == 200, response.text


async def test_an_address_is_locked_after_its_limit_whatever_the_usernames(
    session: AsyncSession, clock: FakeClock, from_address: Callable[..., httpx.AsyncClient]
) -> None:
    known = await make_account(session)
    office = from_address("198.51.100.7")

    for username in (known.username, "nobody-1", "nobody-2"):
        assert_problem(await attempt(office, username), 401, BAD_CREDENTIALS)

    another = await make_account(session)
    # A desk sign-in (no client_id) is refused, even with the right password (unchecked).
    assert_throttled(await attempt(office, another.username, PASSWORD), 10)
    # The username itself is not locked: from elsewhere it signs in.
    response = await attempt(from_address("198.51.100.8"), another.username, PASSWORD)
    assert response.status_code == 200, response.text

    [lockout] = await audit_events(session, "auth.lockout")
    assert (lockout.entity_type, lockout.entity_id) == ("address", "198.51.100.7")
    assert lockout.actor_username == "nobody-2"
    assert lockout.after is not None
    assert (lockout.after["scope"], lockout.after["failures"]) == ("address", 3)


async def test_a_registered_phone_of_the_username_is_not_refused_by_its_address_lock(
    session: AsyncSession, clock: FakeClock, from_address: Callable[..., httpx.AsyncClient]
) -> None:
    """A carrier's or a field office's shared address, locked by someone's typos: its
    phones still sign in. An unknown phone, someone else's, a revoked one, and any phone
    with an unknown username are refused alike; the phone's own failures still count for
    the address, and its username's limit still holds."""
    worker = await make_account(session, Role.field_worker)
    colleague = await make_account(session, Role.field_worker)
    phone, colleagues_phone = (
        await make_device(session, worker),
        await make_device(session, colleague),
    )
    revoked = await make_device(session, worker)
    revoked.revoked_at = clock.now
    await session.commit()
    carrier = from_address("198.51.100.30")
    for n in range(3):
        assert_problem(await attempt(carrier, f"nobody-{n}"), 401, BAD_CREDENTIALS)

    ok = await attempt(carrier, worker.username, PASSWORD, client_id=phone.id)
    assert ok.status_code == 200, ok.text
    for client_id in (uuid.uuid4(), colleagues_phone.id, revoked.id, None):
        assert_throttled(await attempt(carrier, worker.username, PASSWORD, client_id=client_id), 10)
    # An unknown username gets the very answer an unknown phone of a known one gets.
    unknown_user = await attempt(carrier, f"nobody-{uuid.uuid4().hex[:8]}", client_id=phone.id)
    unknown_phone = await attempt(carrier, worker.username, client_id=uuid.uuid4())
    assert _answer(unknown_user) == _answer(unknown_phone)

    # Let through, the phone's failure counts for the address (a longer lock) ...
    assert_problem(await attempt(carrier, worker.username, client_id=phone.id), 401)
    rows = await read_fresh(session, select(LoginThrottle))
    assert {(r.scope, r.subject): r.failures for r in rows} == {
        ("address", "198.51.100.30"): 4,
        ("username", worker.username): 1,
        **{("username", f"nobody-{n}"): 1 for n in range(3)},
    }
    assert_throttled(await attempt(carrier, colleague.username, PASSWORD), 20)
    # ... and its username's limit (2) holds: a second failure locks it, phone or not.
    assert_problem(await attempt(carrier, worker.username, client_id=phone.id), 401)
    assert_throttled(await attempt(carrier, worker.username, PASSWORD, client_id=phone.id), 10)


async def test_ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_ones_as_ipv4(
    session: AsyncSession, clock: FakeClock, from_address: Callable[..., httpx.AsyncClient]
) -> None:
    user = await make_account(session)
    # One client's /64: a new address for each attempt changes nothing.
    for n in range(3):
        client = from_address(f"2001:db8:1:2:{n:x}::{n + 1:x}")
        assert_problem(await attempt(client, f"nobody-{n}"), 401)
    assert_throttled(await attempt(from_address("2001:db8:1:2:ffff::9"), user.username), 10)
    # The next /64 is another client.
    response = await attempt(from_address("2001:db8:1:3::1"), user.username, PASSWORD)
    assert response.status_code == 200, response.text

    # An IPv4 client seen through an IPv6 socket is the same IPv4 client.
    for n, address in enumerate(("::ffff:192.0.2.77", "192.0.2.77", "::ffff:c000:24d")):
        assert_problem(await attempt(from_address(address), f"somebody-{n}"), 401)
    assert_throttled(await attempt(from_address("192.0.2.77"), user.username), 10)

    by_address = select(LoginThrottle).where(col(LoginThrottle.scope) == "address")
    rows = await read_fresh(session, by_address)
    assert {r.subject: r.failures for r in rows} == {"2001:db8:1:2::/64": 3, "192.0.2.77": 3}


def test_address_keys() -> None:
    assert address_key("2001:DB8:0:0:1::5") == "2001:db8::/64"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert address_key("::1") == "::/64"
    assert address_key("203.0.113.5") == "203.0.113.5"
    assert address_key("unknown") == "unknown"  # no peer address (ASGI without a client)


async def test_waiting_out_the_window_does_not_bring_back_the_short_locks(
    session: AsyncSession, clock: FakeClock, from_address: Callable[..., httpx.AsyncClient]
) -> None:
    """The count starts again a window (60 s) after a lock ends, but the lock level is
    remembered for a day: each time the limit is reached again, the lock doubles."""
    user = await make_account(session)
    addresses = (f"192.0.2.{n}" for n in range(10, 100))  # one each: only the username counts

    async def lock_after_the_limit() -> int:
        for _ in range(2):
            assert_problem(await attempt(from_address(next(addresses)), user.username), 401)
        response = await attempt(from_address(next(addresses)), user.username, PASSWORD)
        assert response.status_code == 429, response.text
        return int(response.headers["retry-after"])

    waits = []
    for wait_after in (61, 61, 24 * 3600 + 1):
        waits.append(await lock_after_the_limit())
        clock.advance(waits[-1] + wait_after)  # the lock, then past the window (or a day)
    waits.append(await lock_after_the_limit())

    assert waits == [10, 20, 25, 10]  # a day after the last lock, its level is forgotten
    rows = await read_fresh(session, select(LoginThrottle))
    assert [(r.scope, r.lock_level) for r in rows if r.scope == "username"] == [("username", 1)]


async def test_each_further_failure_doubles_the_lock_up_to_the_longest(
    session: AsyncSession, clock: FakeClock, from_address: Callable[..., httpx.AsyncClient]
) -> None:
    user = await make_account(session)
    addresses = (f"192.0.2.{n}" for n in range(10, 100))  # one each: only the username counts

    async def fail() -> None:
        assert_problem(await attempt(from_address(next(addresses)), user.username), 401)

    async def wait_asked() -> int:
        response = await attempt(from_address(next(addresses)), user.username, PASSWORD)
        assert response.status_code == 429, response.text
        return int(response.headers["retry-after"])

    await fail()
    await fail()
    waits = []
    for _ in range(4):
        waits.append(await wait_asked())
        clock.advance(waits[-1] - 1)
        assert await wait_asked() == 1  # still locked a second before the end
        clock.advance(1)
        await fail()  # one attempt let through, and it fails: a longer lock
    waits.append(await wait_asked())

    assert waits == [10, 20, 25, 25, 25]
    assert len(await audit_events(session, "auth.lockout")) == 5


async def test_a_success_clears_the_username_and_never_counts_against_the_address(
    session: AsyncSession, clock: FakeClock, from_address: Callable[..., httpx.AsyncClient]
) -> None:
    user = await make_account(session)
    addresses = (f"192.0.2.{n}" for n in range(10, 100))

    async def status(
        username: str, password: str = WRONG_PASSWORD, address: str | None = None
    ) -> int:
        client = from_address(address or next(addresses))
        return (await attempt(client, username, password)).status_code

    # Username (one address each): without the clear, the success would be its second
    # count and lock it.
    statuses = [await status(user.username), await status(user.username, PASSWORD)]
    statuses += [await status(user.username) for _ in range(3)]
    assert statuses == [401, 200, 401, 401, 429]

    # Address (one username each): counted, the success would be its third count and
    # lock it.
    office = "198.51.100.9"
    other = await make_account(session)
    statuses = [await status(f"nobody-{n}", address=office) for n in range(2)]
    statuses.append(await status(other.username, PASSWORD, office))
    statuses += [await status(f"nobody-{n}", address=office) for n in range(2, 4)]
    assert statuses == [401, 401, 200, 401, 429]


async def test_a_key_is_forgotten_a_window_after_its_last_attempt(
    session: AsyncSession, clock: FakeClock, from_address: Callable[..., httpx.AsyncClient]
) -> None:
    user = await make_account(session)
    addresses = (f"192.0.2.{n}" for n in range(10, 100))

    async def status() -> int:
        return (await attempt(from_address(next(addresses)), user.username)).status_code

    statuses = [await status()]
    clock.advance(61)
    # Remembered, the next attempt would be the second and the one after it refused.
    statuses += [await status() for _ in range(3)]
    assert statuses == [401, 401, 401, 429]

    # The first attempt's address was forgotten too: its row is gone (the last attempt,
    # refused, counted against nothing).
    rows = await read_fresh(session, select(LoginThrottle))
    assert {(r.scope, r.subject) for r in rows} == {
        ("username", user.username),
        ("address", "192.0.2.11"),
        ("address", "192.0.2.12"),
    }


def _answer(response: httpx.Response) -> tuple[Any, ...]:
    headers = ("content-type", "www-authenticate", "retry-after", "cache-control")
    return (response.status_code, response.json(), *(response.headers.get(h) for h in headers))


async def test_unknown_and_known_usernames_get_the_same_answers_even_when_locked(
    session: AsyncSession, clock: FakeClock, from_address: Callable[..., httpx.AsyncClient]
) -> None:
    user = await make_account(session)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}"

    answers: dict[str, list[tuple[Any, ...]]] = {}
    for n, username in enumerate((user.username, unknown)):
        answers[username] = [
            _answer(await attempt(from_address(f"192.0.2.{10 * n + k}"), username))
            for k in range(3)
        ]

    assert answers[user.username] == answers[unknown]
    assert [a[0] for a in answers[unknown]] == [401, 401, 429]
    lockouts = await audit_events(session, "auth.lockout")
    assert [e.actor_username for e in lockouts] == [user.username, unknown]


async def test_concurrent_attempts_never_get_more_than_the_limit_checked(
    session: AsyncSession, clock: FakeClock, from_address: Callable[..., httpx.AsyncClient]
) -> None:
    user = await make_account(session)

    responses = await asyncio.gather(
        *(attempt(from_address(f"192.0.2.{n}"), user.username) for n in range(10, 20))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 2 + [429] * 8
    assert len(await audit_events(session, "auth.login_failed")) == 2


async def test_a_sign_in_sent_twice_at_once_succeeds_twice(
    session: AsyncSession, clock: FakeClock, from_address: Callable[..., httpx.AsyncClient]
) -> None:
    """A retry racing the original, from one phone: both are let in, and nothing is
    left counted."""
    user = await make_account(session)
    phone = from_address("192.0.2.50")

    responses = await asyncio.gather(*(attempt(phone, user.username, PASSWORD) for _ in range(2)))

    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert await read_fresh(session, select(LoginThrottle)) == []


async def test_a_field_office_signs_in_all_at_once(
    session: AsyncSession, clock: FakeClock, from_address: Callable[..., httpx.AsyncClient]
) -> None:
    """More phones than the address's limit (3), behind one address, all sign in at
    the same moment: successes never count against an address."""
    workers = [await make_account(session) for _ in range(6)]
    office = from_address("198.51.100.20")

    responses = await asyncio.gather(*(attempt(office, w.username, PASSWORD) for w in workers))

    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]


async def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(
    session: AsyncSession,
    settings: Settings,
    clock: FakeClock,
    from_address: Callable[..., httpx.AsyncClient],
) -> None:
    proxy = "203.0.113.9"
    # Not trusted: every attempt is the proxy's, whatever it forwards.
    direct = from_address(proxy)
    for n in range(3):
        forwarded = {"X-Forwarded-For": f"192.0.2.{n}"}
        assert_problem(await attempt(direct, f"nobody-{n}", headers=forwarded), 401)
    refused = await attempt(direct, "nobody-3", headers={"X-Forwarded-For": "192.0.2.3"})
    assert_throttled(refused, 10)

    # Trusted: the proxy's own address is locked, yet each client it forwards for is
    # let through, and counted as itself.
    behind_proxy = create_app(settings.model_copy(update={"trusted_proxies": [proxy]}))
    behind_proxy.state.login_limiter.clock = clock
    try:
        via = from_address(proxy, behind_proxy)
        for n in range(2):
            forwarded = {"X-Forwarded-For": f"198.51.100.{n}"}
            assert_problem(await attempt(via, f"someone-{n}", headers=forwarded), 401)
    finally:
        await behind_proxy.state.engine.dispose()

    by_address = select(LoginThrottle).where(col(LoginThrottle.scope) == "address")
    rows = await read_fresh(session, by_address)
    assert {r.subject: r.failures for r in rows} == {
        proxy: 3,
        **{f"198.51.100.{n}": 1 for n in range(2)},
    }


# --- Settings ---------------------------------------------------------------------------


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDSYNC_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1,::1")
    assert Settings(env=Environment.development).trusted_proxies == [
        "10.0.0.0/8",
        "127.0.0.1",
        "::1",
    ]
    monkeypatch.delenv("FIELDSYNC_TRUSTED_PROXIES")
    assert Settings(env=Environment.development).trusted_proxies == []  # believe no one
    for wrong in ("*", "proxy.example.org", "10.0.0.0/33"):
        with pytest.raises(ValidationError, match="not an IP address or network"):
            Settings(env=Environment.development, trusted_proxies=[wrong])


def test_the_longest_lock_is_no_shorter_than_the_first() -> None:
    with pytest.raises(ValidationError, match="FIELDSYNC_LOGIN_LOCKOUT_MAX_SECONDS"):
        Settings(
            env=Environment.development, login_lockout_seconds=60, login_lockout_max_seconds=30
        )


def test_by_default_nothing_is_throttled_before_five_failures_nor_for_over_an_hour() -> None:
    policy = ThrottlePolicy.from_settings(Settings(env=Environment.development))
    assert (policy.username_limit, policy.address_limit) == (5, 20)
    assert [t.total_seconds() for t in policy.lock_lengths()] == [
        30, 60, 120, 240, 480, 960, 1920, 3600,
    ]  # fmt: skip
