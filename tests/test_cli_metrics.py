"""`fieldsync serve`'s metrics directory: fresh for several workers and removed at stop,
an operator's own emptied of an earlier run, and those of killed servers removed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from app.cli import METRICS_DIR_PREFIX, METRICS_DIR_VARIABLE, _metrics_directory


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(METRICS_DIR_VARIABLE, raising=False)
    return tmp_path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_several_workers_get_a_fresh_directory_removed_at_stop(temp_root: Path) -> None:
    with _metrics_directory(2):
        directory = Path(os.environ[METRICS_DIR_VARIABLE])
        assert directory.is_dir()
        assert directory.parent == temp_root
        assert directory.name.startswith(f"{METRICS_DIR_PREFIX}{os.getpid()}-")
        (directory / "counter_123.db").write_bytes(b"\0")
    assert METRICS_DIR_VARIABLE not in os.environ
    assert not directory.exists()


def test_one_worker_keeps_its_metrics_in_memory(temp_root: Path) -> None:
    with _metrics_directory(1):
        assert METRICS_DIR_VARIABLE not in os.environ
    assert list(temp_root.iterdir()) == []


def test_the_directories_of_killed_servers_are_removed_and_live_ones_kept(
    temp_root: Path,
) -> None:
    killed = temp_root / f"{METRICS_DIR_PREFIX}{_dead_pid()}-abc"
    alive = temp_root / f"{METRICS_DIR_PREFIX}{os.getppid()}-def"
    unrelated = temp_root / "fieldsync-metrics-notes"
    for directory in (killed, alive, unrelated):
        directory.mkdir()
    with _metrics_directory(2):
        pass
    assert not killed.exists()
    assert alive.exists()
    assert unrelated.exists()


def test_an_operators_directory_is_used_and_emptied_of_the_last_run(
    temp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = temp_root / "prometheus"
    own.mkdir()
    (own / "counter_99.db").write_bytes(b"\0")
    (own / "README").write_text("kept")
    monkeypatch.setenv(METRICS_DIR_VARIABLE, str(own))
    with _metrics_directory(4):
        assert os.environ[METRICS_DIR_VARIABLE] == str(own)
        assert sorted(p.name for p in own.iterdir()) == ["README"]
    assert own.is_dir()


def test_the_command_line_does_not_create_metrics_before_serve_chooses_their_directory() -> None:
    """prometheus-client picks memory or files when a metric is created: `serve` must set
    PROMETHEUS_MULTIPROC_DIR (and empty an operator's) before anything creates one."""
    code = "import sys, app.cli; print('prometheus_client' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr
