"""The `fieldsync` command: serve, migrate, users, devices, demo data, settlements, OpenAPI."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth
from app.auth.models import Role
from app.core.config import DatabaseSettings, Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.errors import DomainError
from app.settlements import service as settlements

T = TypeVar("T")

cli = typer.Typer(
    name="fieldsync",
    help="FieldSync server: offline-first sync for humanitarian field teams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
users_cli = typer.Typer(help="Create, list and assign user accounts.", no_args_is_help=True)
devices_cli = typer.Typer(help="List and revoke field workers' phones.", no_args_is_help=True)
demo_cli = typer.Typer(help="Synthetic demo data.", no_args_is_help=True)
settlements_cli = typer.Typer(help="Settlement reference data.", no_args_is_help=True)
feed_cli = typer.Typer(help="The change feed phones pull.", no_args_is_help=True)
cli.add_typer(users_cli, name="users")
cli.add_typer(devices_cli, name="devices")
cli.add_typer(demo_cli, name="demo")
cli.add_typer(settlements_cli, name="settlements")
cli.add_typer(feed_cli, name="feed")


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _configuration_error(exc: ValidationError) -> typer.Exit:
    problems = "; ".join(
        (f"FIELDSYNC_{'_'.join(str(p) for p in e['loc']).upper()}: " if e["loc"] else "")
        + e["msg"].removeprefix("Value error, ")
        for e in exc.errors()
    )
    return _fail(f"invalid configuration: {problems}", 2)


def _settings() -> Settings:
    """The server's configuration, or a clear message naming each bad variable (exit 2)."""
    try:
        return get_settings()
    except ValidationError as exc:
        raise _configuration_error(exc) from None


def _database_settings() -> DatabaseSettings:
    """Only the database URL: what migrations and account management need."""
    try:
        return DatabaseSettings()
    except ValidationError as exc:
        raise _configuration_error(exc) from None


def _in_transaction(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction; domain errors print and exit 1."""

    async def run() -> T:
        engine = create_engine(_database_settings())
        try:
            async with create_sessionmaker(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except DomainError as exc:
        details = "".join(f"\n  {e.field}: {e.message}" for e in exc.errors or [])
        raise _fail(exc.detail + details) from None


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option(help="Server processes (use PostgreSQL for more than one).", min=1)
    ] = 1,
) -> None:
    """Serve the API with uvicorn. The database is FIELDSYNC_DATABASE_URL."""
    import uvicorn

    from app.core.logs import log_config

    settings = _settings()
    if workers > 1 and settings.is_sqlite:
        typer.secho("warning: several workers on SQLite serialise every write.", err=True)
    with _metrics_directory(workers):
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            # X-Forwarded-* are believed only from FIELDSYNC_TRUSTED_PROXIES, by the app
            # itself (app/main.py); uvicorn's own would trust 127.0.0.1 whatever the setting.
            proxy_headers=False,
            log_level="info",
            log_config=log_config("INFO"),
            access_log=False,  # the app writes its own, with the request id and the route
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        )


METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
METRICS_DIR_PREFIX = "fieldsync-metrics-"


@contextmanager
def _metrics_directory(workers: int) -> Iterator[None]:
    """Where the worker processes share their metrics (app/core/metrics.py).

    Several workers get a fresh directory, made before they start and removed when the
    server stops; one left by a server that was killed is removed on the next start. An
    operator's own PROMETHEUS_MULTIPROC_DIR is used as it is, emptied of an earlier run's
    files. One worker keeps its metrics in memory. This process must not have imported
    prometheus-client's metrics before: they choose their storage when they are created.
    """
    own = os.environ.get(METRICS_DIR_VARIABLE)
    if own:
        Path(own).mkdir(parents=True, exist_ok=True)
        for stale in Path(own).glob("*.db"):
            stale.unlink()
        yield
        return
    if workers == 1:
        yield
        return
    _remove_orphaned_metrics_directories()
    directory = tempfile.mkdtemp(prefix=f"{METRICS_DIR_PREFIX}{os.getpid()}-")
    os.environ[METRICS_DIR_VARIABLE] = directory
    try:
        yield
    finally:
        os.environ.pop(METRICS_DIR_VARIABLE, None)
        shutil.rmtree(directory, ignore_errors=True)


def _remove_orphaned_metrics_directories() -> None:
    """Directories of servers of this user that are gone (killed before they cleaned up)."""
    for directory in Path(tempfile.gettempdir()).glob(f"{METRICS_DIR_PREFIX}*-*"):
        pid = directory.name.removeprefix(METRICS_DIR_PREFIX).split("-", 1)[0]
        try:
            owner = directory.stat().st_uid
        except OSError:
            continue  # removed meanwhile by another server starting
        if not pid.isdigit() or owner != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except PermissionError:
            continue  # alive, another user's


@cli.command()
def migrate() -> None:
    """Apply every pending database migration."""
    from app.core.migrations import upgrade_to_head

    upgrade_to_head(_database_settings().database_url)
    typer.echo("database migrated to head")


@cli.command()
def openapi(
    output: Annotated[
        Path | None, typer.Option(help="Where to write; default openapi/openapi.json.")
    ] = None,
) -> None:
    """Write the OpenAPI document generated from the app."""
    from app.core.openapi import OPENAPI_PATH, write_openapi
    from app.main import create_app

    path = write_openapi(create_app(_settings()), output or OPENAPI_PATH)
    typer.echo(f"wrote {path}")


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not one of {', '.join(r.value for r in Role)}"
        ) from None


@users_cli.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="Username to sign in with.", metavar="NAME")],
    role: Annotated[str, typer.Option(help="field_worker, supervisor, partner or admin.")],
    password: Annotated[str | None, typer.Option(help="Prompted for when not given.")] = None,
    settlement: Annotated[
        list[str] | None, typer.Option(help="P-code to assign; repeat for more.")
    ] = None,
    full_name: Annotated[str, typer.Option(help="The person's name, shown to supervisors.")] = "",
) -> None:
    """Create an account, optionally assigned to settlements."""
    parsed_role = _role(role)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    assert password is not None
    secret = password

    async def work(session: AsyncSession) -> list[str]:
        user = await auth.create_user(
            session, username=name, role=parsed_role, password=secret, full_name=full_name
        )
        if not settlement:
            return []
        return await settlements.assign(session, user.id, settlement, username=name)

    assigned = _in_transaction(work)
    suffix = f", assigned to {', '.join(assigned)}" if assigned else ""
    typer.echo(f"created {parsed_role.value} {name}{suffix}")


@users_cli.command("list")
def users_list() -> None:
    """List every account with its role and settlements."""

    async def work(session: AsyncSession) -> list[tuple[str, str, bool, list[str]]]:
        assigned = await settlements.all_assignments(session)
        return [
            (u.username, u.role, u.is_active, assigned.get(u.id, []))
            for u in await auth.list_users(session)
        ]

    rows = _in_transaction(work)
    typer.echo(f"{'USERNAME':<24} {'ROLE':<13} {'ACTIVE':<6} SETTLEMENTS")
    for username, role, active, pcodes in rows:
        typer.echo(f"{username:<24} {role:<13} {'yes' if active else 'no':<6} {' '.join(pcodes)}")


@users_cli.command("assign")
def users_assign(
    name: Annotated[str, typer.Argument(help="Username.", metavar="NAME")],
    pcodes: Annotated[list[str], typer.Argument(help="Settlement P-codes, e.g. UA6308011001.")],
) -> None:
    """Assign settlements to an account (already-assigned ones are kept)."""

    async def work(session: AsyncSession) -> list[str]:
        user = await auth.get_user_by_username(session, name)
        return await settlements.assign(session, user.id, pcodes, username=name)

    assigned = _in_transaction(work)
    typer.echo(f"{name} is assigned to {', '.join(assigned)}")


@users_cli.command("unassign")
def users_unassign(
    name: Annotated[str, typer.Argument(help="Username.", metavar="NAME")],
    pcodes: Annotated[list[str], typer.Argument(help="Settlement P-codes to take away.")],
) -> None:
    """Take settlements away from an account; its phones drop them on their next pull."""

    async def work(session: AsyncSession) -> list[str]:
        user = await auth.get_user_by_username(session, name)
        return await settlements.unassign(session, user.id, pcodes, username=name)

    left = _in_transaction(work)
    typer.echo(f"{name} is assigned to {', '.join(left) if left else 'no settlement'}")


def _set_active(name: str, reason: str, *, active: bool) -> None:
    async def work(session: AsyncSession) -> None:
        user = await auth.get_user_by_username(session, name)
        await auth.set_active(session, user, active=active, reason=reason)

    _in_transaction(work)
    typer.echo(f"{name} is {'enabled' if active else 'disabled'}")


@users_cli.command("disable")
def users_disable(
    name: Annotated[str, typer.Argument(help="Username.", metavar="NAME")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")],
) -> None:
    """Disable an account: every call it makes is refused, its refresh tokens revoked."""
    _set_active(name, reason, active=False)


@users_cli.command("enable")
def users_enable(
    name: Annotated[str, typer.Argument(help="Username.", metavar="NAME")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")],
) -> None:
    """Let a disabled account sign in again (its old tokens stay revoked)."""
    _set_active(name, reason, active=True)


@devices_cli.command("list")
def devices_list() -> None:
    """List registered phones."""
    rows = _in_transaction(auth.device_listing)
    typer.echo(f"{'DEVICE':<36}  {'OWNER':<20} {'LAST SYNC':<25} REVOKED")
    for d in rows:
        last = d.last_sync_at.isoformat(timespec="seconds") if d.last_sync_at else "never"
        revoked = d.revoked_at.isoformat(timespec="seconds") if d.revoked_at else "no"
        typer.echo(f"{d.id}  {d.owner:<20} {last:<25} {revoked}")


@devices_cli.command("revoke")
def devices_revoke(
    device_id: Annotated[str, typer.Argument(help="The device id (a UUID).")],
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")],
) -> None:
    """Revoke a phone: its next call is refused."""
    try:
        parsed = uuid.UUID(device_id)
    except ValueError:
        raise typer.BadParameter(f"{device_id!r} is not a UUID", param_hint="DEVICE_ID") from None
    device = _in_transaction(lambda s: auth.revoke_device(s, parsed, reason=reason))
    typer.echo(f"revoked {device.id} (owner {device.owner})")


@demo_cli.command("load")
def demo_load(
    households: Annotated[
        int, typer.Option(help="How many synthetic households.", min=0, max=100_000)
    ] = 300,
) -> None:
    """Load SYNTHETIC demo data: real settlement names, made-up households and accounts."""
    from app.demo import ILLUSTRATIVE_ORDER_NOTE, load_demo

    report = _in_transaction(lambda s: load_demo(s, household_count=households))
    typer.echo("Loaded SYNTHETIC demo data (no real person's data).")
    typer.echo(f"  settlements: {report.settlements} (Kupianskyi raion, KATOTTG 2025)")
    typer.echo(f"  under evacuation order: {report.under_order}. {ILLUSTRATIVE_ORDER_NOTE}")
    typer.echo(f"  synthetic households added: {report.households_created}")
    for username, password in report.new_accounts.items():
        typer.echo(f"  account {username}  password {password}   (shown once; note it now)")
    for username in report.existing_accounts:
        typer.echo(f"  account {username} already exists; its password is unchanged")


@settlements_cli.command("import")
def settlements_import(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV in the shape of settlements-kupianskyi-raion.csv.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
) -> None:
    """Import or update settlements from a KATOTTG-shaped CSV file."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _fail(f"{file} is not UTF-8 text") from None
    count = _in_transaction(lambda s: settlements.import_settlements(s, text))
    typer.echo(f"imported {count} settlements from {file}")


@feed_cli.command("prune")
def feed_prune(
    days: Annotated[
        int, typer.Option(min=1, help="Keep tombstones filed in the last this many days.")
    ] = 180,
) -> None:
    """Delete old tombstones. Phones whose cursor is older than the newest one deleted are
    told (410) to pull again from the start."""
    from app.core.types import utcnow
    from app.sync import feed

    cutoff = utcnow() - timedelta(days=days)
    count = _in_transaction(lambda s: feed.prune_tombstones(s, cutoff))
    typer.echo(f"deleted {count} tombstones filed before {cutoff.isoformat(timespec='seconds')}")


def _export(
    kind: str,
    account: str,
    out: Path,
    file_format: str,
    protected: bool | None,
    settlement: str | None,
    hromada: str | None,
) -> None:
    from app.auth.service import Principal
    from app.exports import service as exports
    from app.exports.repository import Filters

    settings = _settings()

    async def run() -> int:
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        try:
            async with sessionmaker() as session:
                user = await auth.get_user_by_username(session, account)
            if not user.is_active:
                raise _fail(f"The account {account!r} is disabled.")
            principal = Principal(user.id, user.username, user.full_name, Role(user.role), None)
            with typer.progressbar(length=1, label=f"{kind} -> {out}", file=None) as bar:
                export = await exports.open_export(
                    sessionmaker,
                    settings,
                    principal,
                    kind,
                    file_format,
                    Filters(settlement=settlement, hromada=hromada),
                    protect=protected,
                    progress=bar.update,
                )
                bar.length = max(export.rows, 1)
                with out.open("wb") as sink:
                    async for chunk in export.chunks:
                        sink.write(chunk)
            return export.rows
        finally:
            await engine.dispose()

    try:
        rows = asyncio.run(run())
    except DomainError as exc:
        raise _fail(exc.detail) from None
    typer.echo(f"wrote {rows} rows to {out} (audited as an export by {account})")


class ExportKind(StrEnum):
    households = "households"
    visits = "visits"
    settlements = "settlements"


FormatOption = Annotated[str, typer.Option("--format", help="csv, xlsx, geojson or jsonl.")]
AccountOption = Annotated[
    str, typer.Option("--as", help="The account whose export this is (scope, protection).")
]
OutOption = Annotated[Path, typer.Option("--out", help="The file to write.", dir_okay=False)]
ProtectedOption = Annotated[
    bool | None, typer.Option("--protected/--unprotected", help="Supervisors may ask either.")
]
SettlementOption = Annotated[str | None, typer.Option(help="One settlement P-code.")]
HromadaOption = Annotated[str | None, typer.Option(help="One hromada P-code.")]


@cli.command("export")
def export(
    kind: Annotated[
        ExportKind,
        typer.Argument(help="households, visits (supervisors and admins) or settlements."),
    ],
    account: AccountOption,
    out: OutOption,
    file_format: FormatOption = "csv",
    protected: ProtectedOption = None,
    settlement: SettlementOption = None,
    hromada: HromadaOption = None,
) -> None:
    """Write an export to a file, as the account would get it over the API (audited as
    its export), with a progress bar."""
    from app.exports import formats

    if file_format not in formats.MEDIA_TYPES:
        choices = ", ".join(formats.MEDIA_TYPES)
        raise typer.BadParameter(f"must be one of {choices}", param_hint="--format")
    _export(kind.value, account, out, file_format, protected, settlement, hromada)


def main() -> None:
    cli(prog_name="fieldsync")


if __name__ == "__main__":
    main()
