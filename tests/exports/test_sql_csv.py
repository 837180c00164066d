"""The CSV PostgreSQL writes (sql_csv.py, COPY) is the CSV formats.py writes, byte for byte.

Households and visits are pushed, then their stored values are overwritten with values
chosen to trip each rule: commas, quotes, line breaks and formula starts in text,
empty text, NULLs everywhere, floats with and without a fraction, -0.0 and 1e-05,
microseconds, ISO weeks at a year's edge, top-coding, lists with sensitive reasons and
items the fast list path cannot take. Both paths then write each export kind, plain and
protected, from the same data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from app.core.config import Settings
from app.exports import formats, repository, service, sql_csv
from app.exports.repository import Filters
from app.households.models import Household
from app.visits.models import Visit
from tests.sync.helpers import ensure_settlement, household, make_phone, push, visit

SETTLEMENT = "UA6308013001"
KEY = b"k" * 32

#: Stored household values, one dict a household (the rest stays as pushed).
HOUSEHOLDS: list[dict[str, Any]] = [
    {
        "address": "вул. Шевченка, 12",
        "head_name": 'Іван "Ваня" Петренко',
        "notes": "перший рядок\nдругий рядок",
        "phone": "+380671234567",
        "lat": 50.0,
        "lon": -0.0,
        "members": 9,
        "members_elderly": -1,
        "members_children": 3,
        "last_visit_at": datetime(2024, 12, 30, 10, 0, 0, 250000, tzinfo=UTC),
        "planned_departure": date(2021, 1, 3),
        "reasons": ["attachment_to_home", "fear_of_conscription", "no_transport"],
        "needs": ["transport", "medical_evacuation"],
    },
    {
        "address": "",
        "head_name": "-",
        "notes": '=SUM(A1)\r\n"лапки", кома',
        "phone": "@home",
        "lat": 1e-05,
        "lon": 37.123456789012344,
        "members": 8,
        "members_disabled": 2,
        "last_visit_at": datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC),
        "planned_departure": date(2024, 12, 31),
        "reasons": ['з "лапкою"', None, "x"],
        "needs": ["-minus first"],
    },
    {
        "address": "\tз табуляцією",
        "head_name": "\rз CR",
        "notes": "",
        "phone": "",
        "lat": None,
        "lon": None,
        "members": None,
        "members_elderly": None,
        "members_children": None,
        "members_disabled": None,
        "last_visit_at": None,
        "planned_departure": None,
        "decision": None,
        "last_outcome": None,
        "consent_to_share": None,
        "reasons": [],
        "needs": [],
    },
    {
        "address": "Приморська 3\\4; 'одинарні'",
        "notes": "звичайний текст",
        "lat": 49.7,
        "lon": 180.0,
        "members": 0,
        "last_visit_at": datetime(1999, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        "reasons": ["з\\бекслешем"],
        "needs": [1, True],
    },
]

#: Stored visit values, one dict a visit.
VISITS: list[dict[str, Any]] = [
    {
        "reason_note": "боїться, що\nне повернеться",
        "destination": 'Дніпро, "у сестри"',
        "notes": "+ плюс",
        "people_present": 12,
        "signed_refusal": True,
        "visited_at": datetime(2021, 1, 3, 23, 59, 59, 999999, tzinfo=UTC),
        "lat": 49.712345,
        "lon": 37.0,
        "reasons": ["fear_of_conscription", "attachment_to_home"],
    },
    {
        "reason_note": "",
        "destination": "",
        "notes": "",
        "people_present": -1,
        "signed_refusal": False,
        "leave_mode": None,
        "decision": None,
        "lat": None,
        "lon": None,
        "reasons": [],
        "needs": ["transport"],
    },
    {
        "people_present": None,
        "signed_refusal": None,
        "review_state": "rejected",
        "consent_to_share": False,
        "planned_departure": date(2020, 12, 31),
        "reasons": ["кирилиця без лапок", "b"],
    },
]


@pytest.fixture
async def tricky(
    backend: str, client: httpx.AsyncClient, session: AsyncSession
) -> async_sessionmaker[AsyncSession]:
    if backend != "postgresql":
        pytest.skip("the database writes the CSV on PostgreSQL only; SQLite has no COPY")
    await ensure_settlement(session, SETTLEMENT)
    phone = await make_phone(client, session, settlements=[SETTLEMENT])
    ids = [uuid.uuid4() for _ in HOUSEHOLDS]
    visit_ids = [uuid.uuid4() for _ in VISITS]
    batch = phone.batch(
        households=[household(hid, members=2) for hid in ids],
        visits=[visit(ids[i % len(ids)], visit_id=vid) for i, vid in enumerate(visit_ids)],
    )
    assert set((await push(client, phone, batch)).statuses()) == {"applied"}
    for hid, values in zip(ids, HOUSEHOLDS, strict=True):
        await session.execute(update(Household).where(col(Household.id) == hid).values(**values))
    for vid, values in zip(visit_ids, VISITS, strict=True):
        await session.execute(update(Visit).where(col(Visit.id) == vid).values(**values))
    await session.commit()
    maker: async_sessionmaker[AsyncSession] = async_sessionmaker(
        session.bind, expire_on_commit=False
    )
    return maker


async def _query(session: AsyncSession, kind: str, protected: bool, filters: Filters) -> Any:
    await repository.begin_snapshot(session)
    if kind == "households":
        return repository.households_query(session, None, filters, consenting_only=protected)
    return repository.visits_query(session, None, filters, consenting_only=protected)


async def _joined(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def python_csv(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    kind: str,
    protected: bool,
    filters: Filters,
) -> bytes:
    async with maker() as session:
        query = await _query(session, kind, protected, filters)
        rows = service._rows(session, settings, kind, query, filters, None, protected, KEY)
        columns = service._columns(settings, kind, protected)
        return await _joined(formats.csv_chunks(columns, rows))


async def database_csv(
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
    kind: str,
    protected: bool,
    filters: Filters,
) -> bytes:
    async with maker() as session:
        query = await _query(session, kind, protected, filters)
        lines, leading = service.csv_lines_query(settings, kind, query, protected)
        columns = service._columns(settings, kind, protected)
        rows = sql_csv.csv_rows(repository.copy_csv(session, lines))
        return await _joined(service._database_csv(columns, rows, leading, KEY, None))


@pytest.mark.parametrize("kind", ["households", "visits"])
@pytest.mark.parametrize("protected", [False, True], ids=["plain", "protected"])
async def test_the_database_writes_the_bytes_python_writes(
    tricky: async_sessionmaker[AsyncSession], settings: Settings, kind: str, protected: bool
) -> None:
    filters = Filters()
    python = await python_csv(tricky, settings, kind, protected, filters)
    database = await database_csv(tricky, settings, kind, protected, filters)
    assert python.count(b"\r\n") >= 4  # the head and rows: the comparison is not of nothing
    assert database == python


async def test_a_formula_start_in_the_organisation_name_is_guarded_the_same(
    tricky: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    odd = settings.model_copy(update={"export_org": '=Партнер, "лапки"'})
    python = await python_csv(tricky, odd, "households", True, Filters())
    assert b"\"'=\xd0\x9f" in python  # guarded and quoted
    assert await database_csv(tricky, odd, "households", True, Filters()) == python


async def test_filters_give_the_same_rows_on_both_paths(
    tricky: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    filters = Filters(settlement=SETTLEMENT, as_of=datetime.now(UTC), date_from=date(2000, 1, 3))
    for kind in ("households", "visits"):
        python = await python_csv(tricky, settings, kind, False, filters)
        assert await database_csv(tricky, settings, kind, False, filters) == python


async def _chunked(data: bytes, cuts: list[int]) -> AsyncGenerator[bytes, None]:
    start = 0
    for cut in [*cuts, len(data)]:
        yield data[start:cut]
        start = cut


COPY_OUTPUT = (
    b'a,"b\nc",d\n'  # a line break inside a quoted field
    b'"x ""y"", z",2\n'  # doubled quotes
    b"plain,row\n"
    b'"\n\n",last\n'
)
ROWS = [b'a,"b\nc",d', b'"x ""y"", z",2', b"plain,row", b'"\n\n",last']


@pytest.mark.parametrize("cut", range(1, len(COPY_OUTPUT)))
async def test_copy_output_is_split_into_rows_wherever_its_chunks_end(cut: int) -> None:
    for cuts in ([cut], [cut, min(cut + 3, len(COPY_OUTPUT))]):
        rows = [
            row async for batch in sql_csv.csv_rows(_chunked(COPY_OUTPUT, cuts)) for row in batch
        ]
        assert rows == ROWS


async def test_copy_output_cut_inside_a_row_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="inside a row"):
        async for _ in sql_csv.csv_rows(_chunked(b'a,b\n"c,\n', [])):
            pass


async def test_a_download_left_early_cancels_its_copy_before_its_session_closes(
    tricky: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """A client gone mid-download: the stream (`_closing` over the whole chain, as the
    router holds it) is closed; by the time that returns, the copy is cancelled and its
    connection out of the pool, not left to the garbage collector."""
    marker = "fieldsync_copy_left_early"
    query = select(func.generate_series(1, 5_000_000).label(marker))
    engine = tricky.kw["bind"]
    session = tricky()
    await repository.begin_snapshot(session)
    rows = sql_csv.csv_rows(repository.copy_csv(session, query))
    columns = service._columns(settings, "households", False)[:1]
    stream = service._closing(service._database_csv(columns, rows, 0, KEY, None), session)
    assert (await anext(stream)).startswith(b"household")  # the head
    assert (await anext(stream)).startswith(b"1\r\n2\r\n")  # rows, with CRLF
    await stream.aclose()
    assert engine.sync_engine.pool.checkedout() == 0
    async with tricky() as check:
        still_copying: Sequence[Any] = []
        for _ in range(50):
            still_copying = (
                await check.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE query LIKE :q AND state = 'active'"
                        " AND pid <> pg_backend_pid()"
                    ),
                    {"q": f"%{marker}%"},
                )
            ).all()
            if not still_copying:
                break
            await asyncio.sleep(0.1)
        assert still_copying == []
        assert (await check.execute(text("SELECT 1"))).scalar_one() == 1


def test_pseudonyms_written_in_a_batch_are_the_pseudonyms_written_one_by_one() -> None:
    """The batch writer (COPY's ids, as hex) gives `pseudonym` of each id, whatever the
    batch's size; 2,000 ids give every value of the 25th character's 5 bits."""
    ids = [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), *(uuid.uuid4() for _ in range(2000))]
    expected = [service.pseudonym(KEY, id_).encode() for id_ in ids]
    assert service.pseudonyms_of_hex(KEY, [id_.hex.encode() for id_ in ids]) == expected
    assert {name[-1] for name in expected} == set(b"abcdefghijklmnopqrstuvwxyz234567")
    for id_, name in zip(ids[:3], expected[:3], strict=True):
        assert service.pseudonyms_of_hex(KEY, [id_.hex.encode()]) == [name]
    assert service.pseudonyms_of_hex(KEY, []) == []
