"""The soak benchmark, 30 seconds of it: 200 simulated phones on flaky links, two server
processes, a PostgreSQL of the test's own stopped for 3 s in the middle (bench/soak.py).

Every target must be met: nothing lost, nothing stored twice, no 5xx but 503 during the
outage, every replica equal to the server, every answer as journaled and every household
the fold of what was recorded, no phone giving up. The report is printed (see it with
-s, or in the failure message). `FIELDSYNC_SOAK_SECONDS` lengthens it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.soak import Options, header, run_soak
from tests.private_postgres import PrivatePostgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SECONDS = float(os.environ.get("FIELDSYNC_SOAK_SECONDS") or 30)


@pytest.fixture
def soak_database(private_postgres: PrivatePostgres) -> tuple[PrivatePostgres, str]:
    return private_postgres, private_postgres.create_database()


async def test_a_30_second_soak_meets_every_target(
    soak_database: tuple[PrivatePostgres, str], tmp_path: Path
) -> None:
    postgres, url = soak_database
    options = Options(seconds=SECONDS, devices=200, outage=3.0, rss_every=10.0)
    result = await run_soak(options, url, postgres, log_dir=tmp_path)
    printed = "\n".join([*header(options), *result.lines()])
    print(printed)
    assert result.outage.injected, printed
    assert result.report.visits_recorded > options.devices, printed
    for target, met in result.targets():
        assert met, f"{target}\n{printed}"
    assert result.server_errors()[0] > 0, f"no phone met the outage\n{printed}"
