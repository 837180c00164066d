"""A process that imports the server once and then forks `fieldsync serve` on demand.

Run by tests/forked_server.py as `python -m tests.zygote`, with the server's environment.
It imports what a server process imports, writes `ready`, then reads requests from
stdin, one a line: `HOST PORT LOG_PATH`. For each it forks a child that starts a session
of its own (so the child is its own process group), sends its output to LOG_PATH and
runs the `fieldsync serve` command with one worker; it answers with the child's pid.
The child is a real uvicorn server process like any other: only the interpreter start
and the imports (seconds on a busy machine) were done before the fork. Children are
reaped as they exit (their exit status is not kept). End of input ends the zygote.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys

#: Modules `fieldsync serve` imports only when it runs (uvicorn picks its implementations
#: then); importing them here saves that in every child. Missing ones are skipped.
WARM = (
    "uvicorn.config",
    "uvicorn.server",
    "uvicorn.loops.auto",
    "uvicorn.loops.uvloop",
    "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on",
    "app.core.logs",
)


def _serve(host: str, port: str, log_path: str) -> None:
    """In the child: become a process group of its own and run `fieldsync serve`."""
    from app.cli import cli

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    code = 0
    try:
        cli(["serve", "--host", host, "--port", port, "--workers", "1"], prog_name="fieldsync")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def main() -> None:
    import app.cli
    import app.main
    from app.core.migrations import head_revision

    for name in WARM:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    head_revision()  # cached: /readyz in every child reads it
    del app  # imported for their side effect: the modules are loaded
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps exited children
    print("ready", flush=True)
    for line in sys.stdin:
        host, port, log_path = line.split()
        pid = os.fork()
        if pid == 0:
            _serve(host, port, log_path)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
