"""A PostgreSQL server of one's own, to stop and start: for outage tests and the soak.

The shared server on 127.0.0.1:5432 serves every other test (and other suites at the
same time): it must never be stopped. `PrivatePostgres` makes a throwaway cluster with
`initdb` in a temporary directory and runs it with `pg_ctl` on a free port of 127.0.0.1,
trust authentication, its socket in that directory. `stop()` is `pg_ctl stop -m
immediate`: the server dies as in a crash (no checkpoint, open transactions lost,
recovery from the write-ahead log on the next `start()`), which is an outage as a server
process sees it. `fsync` is off: an immediate stop loses no write the operating system
already holds, and the cluster is thrown away afterwards.

initdb refuses to run as root; as root the commands run as the `postgres` user
(`runuser`). The binaries are found on PATH, else in the newest
/usr/lib/postgresql/*/bin, or where FIELDSYNC_TEST_PG_BIN says.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import asyncpg

from app.core.migrations import upgrade_to_head
from tests.databases import run_blocking
from tests.servers import free_port

COMMAND_TIMEOUT_SECONDS = 60


def _bin_dir() -> Path | None:
    configured = os.environ.get("FIELDSYNC_TEST_PG_BIN")
    if configured:
        return Path(configured)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent

    def version(path: Path) -> float:
        try:
            return float(path.parent.parent.name)
        except ValueError:
            return 0.0

    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    return installed[-1].parent if installed else None


def unavailable_reason() -> str | None:
    """Why a private PostgreSQL cannot be started here, or None if it can."""
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        return (
            "initdb was not found (on PATH, in /usr/lib/postgresql/*/bin or "
            "FIELDSYNC_TEST_PG_BIN): a private PostgreSQL server cannot be started"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: initdb cannot run as the postgres user"
    return None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port; see the module docstring."""

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        bin_dir = _bin_dir()
        assert bin_dir is not None
        self.bin_dir = bin_dir
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="fieldsync-pg-"))
        self.data = self.directory / "data"
        self.log_path = self.directory / "postgres.log"
        self._as_postgres = os.geteuid() == 0
        try:
            if self._as_postgres:
                shutil.chown(self.directory, user="postgres")
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of a database of this server."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stdout}{done.stderr}\n"
                f"--- {self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "start"
        )

    def stop(self, *, immediate: bool = True) -> None:
        """Stop the server: at once, as in a crash (default), or cleanly."""
        mode = "immediate" if immediate else "fast"
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str = "fieldsync") -> str:
        """A new database migrated to head; returns its SQLAlchemy URL."""

        async def create() -> None:
            connection = await asyncpg.connect(self.admin_dsn, timeout=10)
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        asyncio.run(create())
        url = self.url(name)
        run_blocking(upgrade_to_head, url)
        return url

    def close(self) -> None:
        """Stop the server if it runs and delete the cluster."""
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
