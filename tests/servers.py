"""Real server processes for tests: `fieldsync serve` in a subprocess, on a free port.

`ServerProcess` starts the CLI's `serve` command (uvicorn, one or more worker
processes) in its own process group, waits until `/readyz` answers 200 and every
worker has started, and stops the whole group on exit: SIGTERM, then SIGKILL after a
timeout. Its output goes to a log file (never a pipe that could fill up and stall the
server); a failed start raises with the log's tail. `stop()`/`start()` restart it on
the same port and `kill()` crashes it, for crash, restart and outage tests.

These helpers are synchronous. From an async test, call them directly when blocking
the event loop for a few seconds is harmless (nothing else runs), or through
`asyncio.to_thread` when requests must keep flowing meanwhile.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import httpx
import orjson

from app.core.migrations import upgrade_to_head
from tests.conftest import TEST_SECRET_KEY
from tests.databases import empty_postgres_database, run_blocking

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
BIND_ATTEMPTS = 3
#: What uvicorn logs (at info level, as `fieldsync serve` runs it) when a worker is ready.
WORKER_STARTED = "Application startup complete"
WORKER_PID = re.compile(r"Started server process \[(\d+)\]")
#: The line `ServerProcess` writes to the log before each start (the only line not JSON:
#: `fieldsync serve` logs everything, uvicorn's startup lines too, as JSON lines).
START_MARKER = "--- starting: "
#: A log line at one of these levels fails `assert_clean_log`.
BAD_LEVELS = frozenset({"ERROR", "CRITICAL"})


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a live process has used so far; None if unknown (not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces) end with ")"; utime and stime
    # are the 14th and 15th fields of the whole line.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_problems(log: str) -> list[str]:
    """The lines of a server log that a healthy run never writes: ERROR or CRITICAL lines,
    lines that carry an exception, and lines that are not JSON (a traceback printed
    around the JSON formatter), apart from `ServerProcess`'s own start markers."""
    problems = []
    for line in log.splitlines():
        if not line.strip() or line.startswith(START_MARKER):
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            problems.append(line)
            continue
        if not isinstance(entry, dict) or entry.get("level") in BAD_LEVELS or "exception" in entry:
            problems.append(line)
    return problems


def assert_clean_log(log: str, context: str = "") -> None:
    """Fail, quoting the offending lines, if the log holds any of `log_problems`."""
    problems = log_problems(log)
    shown = "\n".join(problems[:20])
    more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
    assert not problems, (
        f"the server log holds {len(problems)} error, exception or non-JSON line(s) "
        f"{context}:\n{shown}{more}"
    )


class ServerStartError(RuntimeError):
    """The server did not become ready; the message carries its log's tail."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def migrated_postgres_database(prefix: str = "fieldsync_proc") -> Iterator[str]:
    """A new PostgreSQL database migrated to head, dropped afterwards; yields its async URL.

    Call it outside a running event loop (a sync fixture): it uses `asyncio.run`.
    """
    with empty_postgres_database(prefix) as url:
        run_blocking(upgrade_to_head, url)
        yield url


class ServerProcess:
    """`python -m app.cli serve` as a subprocess in its own process group.

    `env` adds to (or, with a value of None, removes from) the environment the server
    gets; FIELDSYNC_DATABASE_URL, FIELDSYNC_ENV=test and the tests' secret key are set
    by default. The port is chosen once and kept across restarts.
    """

    def __init__(
        self,
        database_url: str,
        *,
        workers: int = 2,
        env: Mapping[str, str | None] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
    ) -> None:
        self.database_url = database_url
        self.workers = workers
        self.host = host
        self.port = port if port is not None else free_port(host)
        #: A port picked here may be taken before the server binds it: then pick another.
        self._may_move_port = port is None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._own_log_dir: Path | None = None
        if log_path is None:
            self._own_log_dir = Path(tempfile.mkdtemp(prefix="fieldsync-server-"))
            log_path = self._own_log_dir / "server.log"
        self.log_path = log_path
        self.env = self._environment(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        #: Set once every process of the group is known to be gone: its id may then be
        #: reused by an unrelated process group, which must never be signalled.
        self._group_gone = True
        self._log_offset = 0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _environment(self, extra: Mapping[str, str | None]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDSYNC_")}
        env.update(
            FIELDSYNC_DATABASE_URL=self.database_url,
            FIELDSYNC_ENV="test",
            FIELDSYNC_SECRET_KEY=TEST_SECRET_KEY,
            PYTHONUNBUFFERED="1",
        )
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    # --- The log ----------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the server wrote, over every start."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_since_start(self) -> str:
        """What the server wrote since the last `start()`."""
        return self.log_text()[self._log_offset :]

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def worker_pids(self) -> list[int]:
        """The worker processes started since the last `start()`, from uvicorn's log lines.

        With one worker uvicorn serves in the main process, which is then the only "worker".
        """
        return [int(pid) for pid in WORKER_PID.findall(self.log_since_start())]

    # --- Lifecycle --------------------------------------------------------------------

    def start(self, *, wait: bool = True) -> None:
        """Start the server and wait until it is ready; raise ServerStartError if it is not.

        With `wait=False` it returns at once (say, to start it while its database is down);
        call `wait_ready()` later.
        """
        if self.running:
            raise RuntimeError(f"the server is already running (pid {self.pid})")
        for attempt in range(1, BIND_ATTEMPTS + 1):
            self._spawn()
            if not wait:
                return
            try:
                self.wait_ready(self.startup_timeout)
            except ServerStartError:
                self.stop()
                taken = "address already in use" in self.log_since_start().lower()
                if not (taken and self._may_move_port and attempt < BIND_ATTEMPTS):
                    raise
                self.port = free_port(self.host)  # another process took the port meanwhile
            except BaseException:
                self.stop()
                raise
            else:
                self._may_move_port = False  # a restart keeps the address clients know
                return

    def _spawn(self) -> None:
        self.stop()  # what is left of an earlier run: workers orphaned by a killed parent
        self._log_offset = len(self.log_text())
        with self.log_path.open("ab") as log:
            log.write(f"--- starting: {' '.join(self.command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._group_gone = False

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        """Wait until /readyz answers 200 and every worker has logged its startup."""
        deadline = time.monotonic() + timeout
        last_problem = "no answer yet"
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while True:
                process = self.process
                if process is None or process.poll() is not None:
                    code = None if process is None else process.returncode
                    raise ServerStartError(
                        f"the server exited with code {code} while starting\n"
                        f"--- log tail ({self.log_path}):\n{self.log_tail()}"
                    )
                started = self.log_since_start().count(WORKER_STARTED)
                try:
                    response = client.get("/readyz")
                except httpx.HTTPError as exc:
                    last_problem = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200 and started >= self.workers:
                        return
                    last_problem = (
                        f"/readyz answered {response.status_code} {response.text[:300]}; "
                        f"{started} of {self.workers} workers started"
                    )
                if time.monotonic() >= deadline:
                    raise ServerStartError(
                        f"the server was not ready within {timeout:.0f} s ({last_problem})\n"
                        f"--- log tail ({self.log_path}):\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def _signal_group(self, signum: int) -> bool:
        """Signal the server's whole process group; False if nothing is left in it."""
        if self.process is None or self._group_gone:
            return False
        try:
            os.killpg(self.process.pid, signum)  # the group id is the leader's pid
        except ProcessLookupError:
            if self.process.poll() is not None:
                self._group_gone = True
            return False
        return True

    def _group_alive(self) -> bool:
        return self._signal_group(0)

    def _wait_group_gone(self, timeout: float) -> bool:
        """Reap the leader, and wait for every other process of its group to exit."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        while self._group_alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, timeout: float | None = None) -> int | None:
        """Graceful stop: SIGTERM to the group, SIGKILL after `timeout`. Returns the exit code."""
        if self.process is None:
            return None
        timeout = self.stop_timeout if timeout is None else timeout
        if self._signal_group(signal.SIGTERM) and not self._wait_group_gone(timeout):
            self._signal_group(signal.SIGKILL)
            self._wait_group_gone(timeout)
        return self._reap()

    def kill(self) -> int | None:
        """Crash: SIGKILL to every process of the group at once, then wait for them."""
        if self.process is None:
            return None
        if self._signal_group(signal.SIGKILL):
            self._wait_group_gone(self.stop_timeout)
        return self._reap()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _reap(self) -> int | None:
        """Wait for the leader (bounded) so no zombie or ResourceWarning is left behind."""
        process = self.process
        if process is None:
            return None
        try:
            return process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(timeout=self.stop_timeout)

    def close(self) -> None:
        """Stop the server and remove the log file if this object created it."""
        self.stop()
        if self._own_log_dir is not None:
            shutil.rmtree(self._own_log_dir, ignore_errors=True)

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def running_server(
    database_url: str,
    *,
    workers: int = 2,
    env: Mapping[str, str | None] | None = None,
    log_path: Path | None = None,
) -> Iterator[ServerProcess]:
    """A started server (see ServerProcess); `.base_url` is where it listens."""
    server = ServerProcess(database_url, workers=workers, env=env, log_path=log_path)
    try:
        server.start()
        yield server
    finally:
        server.close()
