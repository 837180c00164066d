"""`ServerProcess` whose starts are forks of a process that has already imported the server.

A test that kills and restarts a server fifty times pays for fifty interpreter starts
and imports, seconds each on a busy two-core machine. `ForkedServerProcess` starts a
zygote once (tests/zygote.py) and asks it for each start: the child runs the very
`fieldsync serve` command (one worker) in a process group of its own, is killed with
SIGKILL like any other, and is waited for by `/readyz` as `ServerProcess` does. Only the
interpreter start and the imports are shared. Exit codes are not known (the zygote reaps
its children): a child that is gone reports 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.servers import REPO_ROOT, ServerProcess


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class ForkedChild:
    """What `ServerProcess` uses of a `subprocess.Popen`, for a child of the zygote."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not _alive(self.pid):
            self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"server process {self.pid}", timeout or 0.0)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


class ForkedServerProcess(ServerProcess):
    """A one-worker `ServerProcess` started by forking a zygote; see the module docstring."""

    def __init__(self, database_url: str, **options: Any) -> None:
        super().__init__(database_url, workers=1, **options)
        self._zygote: subprocess.Popen[str] | None = None

    def _zygote_process(self) -> subprocess.Popen[str]:
        if self._zygote is not None and self._zygote.poll() is None:
            return self._zygote
        with self.log_path.open("ab") as log:
            self._zygote = subprocess.Popen(
                [sys.executable, "-m", "tests.zygote"],
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self._zygote.stdout is not None
        started = time.monotonic()
        line = self._zygote.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(
                f"the zygote did not start ({line!r} after {time.monotonic() - started:.0f} s)"
                f"\n{self.log_tail()}"
            )
        return self._zygote

    def _spawn(self) -> None:
        self.stop()  # what is left of an earlier run
        self._log_offset = len(self.log_text())
        with self.log_path.open("ab") as log:
            log.write(b"--- forking: fieldsync serve (1 worker)\n")
        zygote = self._zygote_process()
        assert zygote.stdin is not None
        assert zygote.stdout is not None
        zygote.stdin.write(f"{self.host} {self.port} {self.log_path}\n")
        zygote.stdin.flush()
        pid = int(zygote.stdout.readline())
        # It quacks like the Popen the base class keeps (pid, poll, wait, returncode).
        self.process = ForkedChild(pid)  # type: ignore[assignment]
        self._group_gone = False

    def close(self) -> None:
        try:
            super().close()
        finally:
            zygote, self._zygote = self._zygote, None
            if zygote is not None:
                assert zygote.stdin is not None
                assert zygote.stdout is not None
                zygote.stdin.close()
                zygote.stdout.close()
                try:
                    zygote.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    zygote.kill()
                    zygote.wait()
