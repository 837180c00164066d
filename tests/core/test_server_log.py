"""The server-log check of the process tests (tests/servers.py `assert_clean_log`): it
fails on an ERROR or CRITICAL line, on a line that carries an exception, and on a line
that is not JSON, and passes a healthy log (the JSON lines `fieldsync serve` writes)."""

from __future__ import annotations

import orjson
import pytest

from tests.servers import START_MARKER, assert_clean_log, log_problems


def _line(level: str = "INFO", **extra: object) -> str:
    entry = {"time": "2026-01-01T00:00:00.000Z", "level": level, "logger": "fieldsync.x"}
    return orjson.dumps({**entry, "message": "m", **extra}).decode()


HEALTHY = "\n".join(
    [
        f"{START_MARKER}python -m app.cli serve --workers 2",
        _line(message="Application startup complete."),
        _line("WARNING", message="database unavailable: ConnectionRefusedError"),
        "",
    ]
)


def test_a_healthy_log_passes() -> None:
    assert log_problems(HEALTHY) == []
    assert_clean_log(HEALTHY)


@pytest.mark.parametrize(
    "bad",
    [
        _line("ERROR"),
        _line("CRITICAL"),
        _line("INFO", exception={"type": "ValueError", "stack": []}),
        "Traceback (most recent call last):",
        '{"level": "INFO", "message": "cut off',
        "[1, 2]",
    ],
)
def test_an_error_an_exception_or_a_line_not_json_fails_and_is_quoted(bad: str) -> None:
    log = f"{HEALTHY}{bad}\n{_line()}\n"
    assert log_problems(log) == [bad]
    with pytest.raises(AssertionError) as failure:
        assert_clean_log(log, "(context)")
    assert bad in str(failure.value)
    assert "(context)" in str(failure.value)
