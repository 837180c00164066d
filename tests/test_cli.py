"""The `fieldsync` command, run as a real process against each database."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.audit.models import AuditEvent
from app.auth.models import User
from app.core.db import create_engine, create_sessionmaker
from app.core.types import utcnow
from app.demo import DEMO_ACCOUNTS, ORDER_COUNT, SYNTHETIC_LABEL
from app.households.models import Household
from app.settlements.models import Settlement, SettlementAssignment
from app.settlements.service import BUNDLED_SETTLEMENTS
from app.sync.models import FeedState, Tombstone
from tests.conftest import make_settings
from tests.databases import clear_tables
from tests.factories import make_settlement


def fieldsync(
    database_url: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FIELDSYNC_DATABASE_URL": database_url, "FIELDSYNC_ENV": "development"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=120,
        check=False,
    )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncSession]:
    """A session on the test database, emptied after the test."""
    engine = create_engine(make_settings(database_url))
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
    finally:
        await clear_tables(engine)
        await engine.dispose()


async def test_create_assign_and_load_demo(
    database_url: str, db: AsyncSession, tmp_path: Path
) -> None:
    imported = fieldsync(database_url, "settlements", "import", str(BUNDLED_SETTLEMENTS))
    assert imported.returncode == 0, imported.stderr
    assert "imported 269 settlements" in imported.stdout

    created = fieldsync(
        database_url, "users", "create", "olena", "--role", "supervisor",
        "--password", "a-long-synthetic-password", "--settlement", "UA6308001001",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "created supervisor olena, assigned to UA6308001001" in created.stdout

    assigned = fieldsync(database_url, "users", "assign", "olena", "UA6308001002", "UA6308001003")
    assert assigned.returncode == 0, assigned.stderr
    user = (await db.execute(select(User).where(col(User.username) == "olena"))).scalar_one()
    pcodes = (
        await db.execute(
            select(SettlementAssignment.settlement_pcode).where(
                col(SettlementAssignment.user_id) == user.id
            )
        )
    ).scalars()
    assert sorted(pcodes) == ["UA6308001001", "UA6308001002", "UA6308001003"]

    unassigned = fieldsync(database_url, "users", "unassign", "olena", "UA6308001003")
    assert unassigned.returncode == 0, unassigned.stderr
    assert "olena is assigned to UA6308001001, UA6308001002" in unassigned.stdout
    not_assigned = fieldsync(database_url, "users", "unassign", "olena", "UA6308001009")
    assert not_assigned.returncode == 1
    assert "Not assigned to olena: UA6308001009" in not_assigned.stderr

    listed = fieldsync(database_url, "users", "list")
    assert any(line.split()[:2] == ["olena", "supervisor"] for line in listed.stdout.splitlines())

    for action, active in (("disable", "no"), ("enable", "yes")):
        changed = fieldsync(database_url, "users", action, "olena", "--reason", "Synthetic.")
        assert changed.returncode == 0, changed.stderr
        assert f"olena is {action}d" in changed.stdout
        listed = fieldsync(database_url, "users", "list")
        assert ["olena", "supervisor", active] in [
            line.split()[:3] for line in listed.stdout.splitlines()
        ]
        exported = fieldsync(
            database_url, "export", "households", "--as", "olena", "--out", str(tmp_path / "h.csv")
        )
        assert (exported.returncode, "disabled" in exported.stderr) == (
            (1, True) if action == "disable" else (0, False)
        ), exported.stderr
    root = fieldsync(
        database_url,
        "users",
        "create",
        "root",
        "--role",
        "admin",
        "--password",
        "a-long-synthetic-password",
    )
    assert root.returncode == 0, root.stderr
    last = fieldsync(database_url, "users", "disable", "root", "--reason", "Synthetic.")
    assert last.returncode == 1
    assert "last active administrator" in last.stderr

    demo = fieldsync(database_url, "demo", "load", "--households", "40")
    assert demo.returncode == 0, demo.stderr
    assert "SYNTHETIC" in demo.stdout
    for username, _, _ in DEMO_ACCOUNTS:
        assert f"account {username}  password " in demo.stdout
    households = await db.scalar(sa_select(func.count()).select_from(Household))
    assert households == 40
    notes = set((await db.execute(select(Household.notes))).scalars())
    assert notes == {SYNTHETIC_LABEL}
    ordered = await db.scalar(
        sa_select(func.count()).select_from(Settlement).where(col(Settlement.evacuation_ordered))
    )
    assert ordered == ORDER_COUNT

    again = fieldsync(database_url, "demo", "load", "--households", "40")
    assert again.returncode == 0, again.stderr
    assert "  password " not in again.stdout  # passwords are shown once only
    assert "account demo-admin already exists" in again.stdout
    assert await db.scalar(sa_select(func.count()).select_from(Household)) == 40


async def test_the_password_is_prompted_for(database_url: str, db: AsyncSession) -> None:
    password = "typed-at-the-prompt-123"
    result = fieldsync(
        database_url, "users", "create", "petro", "--role", "field_worker",
        stdin=f"{password}\n{password}\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    user = (await db.execute(select(User).where(col(User.username) == "petro"))).scalar_one()
    assert user.role == "field_worker"
    assert password not in user.password_hash


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["userz"], "No such command"),
        (["users", "create", "x", "--role", "boss", "--password", "long-enough-pw"], "boss"),
        (["users", "create", "x", "--role", "admin", "--password", "short"], "at least 10"),
        (["users", "assign", "nobody", "UA6308001001"], "No user named 'nobody'"),
        (["devices", "revoke", "not-a-uuid", "--reason", "lost"], "not a UUID"),
        (["settlements", "import", "/no/such/file.csv"], "does not exist"),
    ],
)
def test_mistakes_print_a_clear_message_and_exit_non_zero(
    database_url: str, args: list[str], message: str
) -> None:
    result = fieldsync(database_url, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_settlements_file_is_refused_with_line_numbers(
    database_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    header = BUNDLED_SETTLEMENTS.read_text(encoding="utf-8").splitlines()[0]
    bad.write_text(f"{header}\nUA63,UA63,hamlet,Х,X,UA6308001,Г,H,UA6308,UA63\n", encoding="utf-8")
    result = fieldsync(database_url, "settlements", "import", str(bad))
    assert result.returncode == 1
    assert "line 2.pcode" in result.stderr
    assert "line 2.category" in result.stderr


def test_serve_refuses_the_default_key_in_production(database_url: str) -> None:
    env = {**os.environ, "FIELDSYNC_DATABASE_URL": database_url, "FIELDSYNC_ENV": "production"}
    env.pop("FIELDSYNC_SECRET_KEY", None)
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "FIELDSYNC_SECRET_KEY" in result.stderr


async def test_feed_prune_deletes_old_tombstones_and_raises_the_mark(
    database_url: str, db: AsyncSession
) -> None:
    await make_settlement(db, "UA6308013001")
    old, recent = utcnow() - timedelta(days=200), utcnow() - timedelta(days=2)
    for filed in (old, recent):
        db.add(
            Tombstone(
                household_id=uuid.uuid4(),
                settlement_pcode="UA6308013001",
                reason="moved",
                created_at=filed,
            )
        )
    await db.commit()

    pruned = fieldsync(database_url, "feed", "prune", "--days", "180")
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.startswith("deleted 1 tombstones filed before ")
    kept = (await db.execute(select(Tombstone.created_at))).scalars().all()
    assert kept == [recent]
    state = (await db.execute(select(FeedState))).scalar_one()
    assert (state.pruned_txid, state.pruned_seq) > (0, 0)


async def test_export_writes_the_file_the_account_would_get(
    database_url: str, db: AsyncSession, tmp_path: Path
) -> None:
    assert (
        fieldsync(database_url, "settlements", "import", str(BUNDLED_SETTLEMENTS)).returncode == 0
    )
    assert fieldsync(database_url, "demo", "load", "--households", "40").returncode == 0
    for name, role in (("olena", "supervisor"), ("ngo", "partner")):
        created = fieldsync(
            database_url, "users", "create", name, "--role", role,
            "--password", "a-long-synthetic-password",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr

    out = tmp_path / "households.csv"
    exported = fieldsync(database_url, "export", "households", "--as", "olena", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert "wrote 40 rows" in exported.stdout
    lines = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(lines) == 2 + 40
    assert lines[1][0] == "#meta +id"
    [event] = (
        await db.execute(select(AuditEvent).where(col(AuditEvent.action) == "export"))
    ).scalars()
    assert event.actor_username == "olena"
    assert event.after is not None
    assert event.after["rows"] == 40

    # The demo households have no consenting visit yet: a partner gets none of them.
    partner_out = tmp_path / "partner.jsonl"
    partner = fieldsync(
        database_url, "export", "households", "--as", "ngo", "--format", "jsonl",
        "--out", str(partner_out),
    )  # fmt: skip
    assert partner.returncode == 0, partner.stderr
    assert partner_out.read_bytes() == b""
    refused = fieldsync(
        database_url, "export", "visits", "--as", "ngo", "--out", str(tmp_path / "v.csv")
    )
    assert refused.returncode == 1
    assert "Visit-level exports are for supervisors" in refused.stderr
    wrong = fieldsync(database_url, "export", "households", "--as", "olena", "--format", "pdf",
                      "--out", str(tmp_path / "x"))  # fmt: skip
    assert wrong.returncode == 2
