"""Login throttling: failed sign-ins counted per username and per client address, with
locks that double in length, shared by every server process through the database.

A username (known or not: the answer never depends on whether the account exists) is
counted before its password is checked, in one atomic statement (`INSERT ... ON
CONFLICT DO UPDATE ... RETURNING`) in a transaction of the limiter's own, committed at
once: concurrent attempts and other processes see the count before the slow password
check ends, so a username never gets more checks than its limit, however many attempts
arrive at once, and a request that then fails cannot roll the count back. Once a
username has been counted `limit` times, each attempt let through locks it: for
`login_lockout_seconds` first, twice as long each time after, at most
`login_lockout_max_seconds`. A sign-in that succeeds clears its username.

A client address is counted only when a sign-in from it fails, in the sign-in's own
transaction (which a failed sign-in commits), and locks the same way. Its key is the
address for IPv4 (an IPv4-mapped IPv6 address, `::ffff:a.b.c.d`, is its IPv4 address)
and the /64 network for IPv6 (`2001:db8:1:2::/64`): one IPv6 client holds a whole /64,
so per-address counting would not hold it at all. Its successes are
never counted: a field office's phones, behind one address, all sign in at once in the
morning. Concurrent failures from one address can overshoot its limit by the number
in flight; its usernames' limits still hold, and the overshoot lengthens its lock.

An attempt on a locked address or username is refused with 429 and `Retry-After`
before anything else is looked at; it is neither checked nor counted, so it gives
nothing away (a locked address's attempts do not count against usernames). One
exception: a phone's sign-in (`client_id`) from a locked address is let through if the
phone is a registered, unrevoked device of the username signing in (one query whose
answer is "no" alike for an unknown username, an unknown device and someone else's
device: the 429 tells nothing); its username is still counted, and if it fails, it
counts against its address. A field office's or a carrier's shared address, locked by
typos at a desk or by a stranger, does not lock out the phones that work from it.

A key's count starts again from zero once `login_failure_window_seconds` pass with no
attempt (after its last lock ends, if it was locked). Its lock level (how many locks in
a row) is remembered longer, `LOCK_LEVEL_MEMORY` after its last lock ends: the first
failure over the limit after that locks it for twice as long as its last lock, so
waiting out the window does not bring back the short locks. A key with neither is
forgotten and its row deleted (each process looks for such rows at most once a minute).

The refresh endpoint is not throttled: a refresh token is 256 random bits that nobody
can guess, and presenting a rotated one already revokes its whole family.
"""

from __future__ import annotations

import ipaddress
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import repository
from app.core.config import Settings
from app.core.errors import DomainError
from app.core.types import utcnow

USERNAME, ADDRESS = "username", "address"
#: The longest subject a key holds (the column's width); longer ones are cut.
SUBJECT_LENGTH = 64
#: How often a process deletes the rows of forgotten keys (they count as new anyway).
PRUNE_EVERY = timedelta(minutes=1)
#: How long after its last lock ends a key's lock level is remembered.
LOCK_LEVEL_MEMORY = timedelta(hours=24)
#: The network an IPv6 client is counted by: one client usually holds a whole /64.
IPV6_PREFIX = 64


class SignInThrottled(DomainError):
    """Too many failed sign-ins for this username or from this address: wait."""

    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed sign-ins. Try again in {retry_after} seconds.",
        )
        self.headers = {"Retry-After": str(retry_after)}


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How many failures each kind of key may have, and how long locks and memory last."""

    username_limit: int
    address_limit: int
    window: timedelta
    first_lock: timedelta
    longest_lock: timedelta
    level_memory: timedelta = LOCK_LEVEL_MEMORY

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        return cls(
            username_limit=settings.login_max_failures_per_username,
            address_limit=settings.login_max_failures_per_address,
            window=timedelta(seconds=settings.login_failure_window_seconds),
            first_lock=timedelta(seconds=settings.login_lockout_seconds),
            longest_lock=timedelta(seconds=settings.login_lockout_max_seconds),
        )

    def lock_lengths(self) -> list[timedelta]:
        """The first lock, doubled each time, up to and ending with the longest."""
        lengths = [min(self.first_lock, self.longest_lock)]
        while lengths[-1] < self.longest_lock:
            lengths.append(min(lengths[-1] * 2, self.longest_lock))
        return lengths

    def limit(self, scope: str) -> int:
        return self.username_limit if scope == USERNAME else self.address_limit


@dataclass(frozen=True, slots=True)
class Attempt:
    """A sign-in attempt let through: its username's count, and the locks it set (scope
    -> until), which stand if it fails."""

    id: uuid.UUID
    at: datetime
    username: str
    #: The address's key (`address_key`).
    address: str
    policy: ThrottlePolicy
    failures: dict[str, int] = field(default_factory=dict)
    locks: dict[str, datetime] = field(default_factory=dict)


def _subject(value: str) -> str:
    """A key as its column can hold it: no NUL, no lone surrogate, at most 64 characters."""
    cleaned = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return cleaned[:SUBJECT_LENGTH]


def address_key(address: str) -> str:
    """The key a client address is counted by: an IPv4 address as it is (an IPv4-mapped
    IPv6 one unwrapped), an IPv6 address's /64 network (`2001:db8:1:2::/64`), anything
    else (no peer address: "unknown") as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        network = ipaddress.IPv6Network((ip.packed, IPV6_PREFIX), strict=False)
        return str(network)
    return str(ip)


def _retry_after(until: datetime, now: datetime) -> int:
    return max(1, math.ceil((until - now).total_seconds()))


async def _count(
    session: AsyncSession, attempt: Attempt, scope: str, subject: str, *, unless_locked: bool
) -> datetime | None:
    """Count the attempt against one key, and note the lock it sets. With `unless_locked`,
    a locked key refuses it instead: then the time its lock ends."""
    now, policy = attempt.at, attempt.policy
    locks = [now + length for length in policy.lock_lengths()]
    counted = await repository.count_sign_in_attempt(
        session,
        scope=scope,
        subject=subject,
        attempt_id=attempt.id,
        now=now,
        limit=policy.limit(scope),
        locks=locks,
        resets=[until + policy.window for until in locks],
        reset_unlocked=now + policy.window,
        levels_since=now - policy.level_memory,
        unless_locked=unless_locked,
    )
    if counted.last_attempt_id != attempt.id:
        assert counted.locked_until is not None  # only a lock refuses
        return counted.locked_until
    attempt.failures[scope] = counted.failures
    # A key keeps its last lock's end after it passes (its level is remembered): only a
    # lock in the future is this attempt's (a locked key is counted only by locking it).
    if counted.locked_until is not None and counted.locked_until > now:
        attempt.locks[scope] = counted.locked_until
    return None


async def failed(session: AsyncSession, attempt: Attempt) -> None:
    """The sign-in failed: count it against its address, in the caller's transaction
    (a failed sign-in commits it)."""
    await _count(session, attempt, ADDRESS, attempt.address, unless_locked=False)


async def succeeded(session: AsyncSession, attempt: Attempt) -> None:
    """The sign-in succeeded: its username starts again from zero. In the caller's
    transaction: it stands if the sign-in is committed."""
    await repository.forget_sign_in_failures(session, scope=USERNAME, subject=attempt.username)


class LoginLimiter:
    """Lets a sign-in attempt through, or refuses it, in a transaction of its own (see
    the module docstring).

    `clock` is the time source, replaceable in tests so that no test sleeps.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        policy: ThrottlePolicy,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policy = policy
        self.clock = clock
        self._pruned_at: datetime | None = None

    async def begin(
        self, *, username: str, address: str, device_id: uuid.UUID | None = None
    ) -> Attempt:
        """Refuse the attempt (`SignInThrottled`) if its username is locked, or its
        address is unless `device_id` is a registered, unrevoked phone of `username`;
        else count it against its username and let it through."""
        now = self.clock()
        attempt = Attempt(
            id=uuid.uuid4(),
            at=now,
            username=_subject(username),
            address=_subject(address_key(address)),
            policy=self.policy,
        )
        async with self.sessionmaker() as session, session.begin():
            refused_until = await repository.sign_in_locked_until(
                session, scope=ADDRESS, subject=attempt.address, now=now
            )
            # A name cut or cleaned to fit its key is not the one typed: never its phone.
            if (
                refused_until is not None
                and device_id is not None
                and attempt.username == username
                and await repository.is_users_phone(session, username, device_id)
            ):
                refused_until = None
            if refused_until is None:
                refused_until = await _count(
                    session, attempt, USERNAME, attempt.username, unless_locked=True
                )
            # Last: it skips rows others hold rather than wait, so it adds no wait to a
            # transaction that holds a lock.
            if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
                self._pruned_at = now
                await repository.prune_sign_in_failures(
                    session, now, levels_since=now - self.policy.level_memory
                )
        if refused_until is not None:
            raise SignInThrottled(_retry_after(refused_until, now))
        return attempt
