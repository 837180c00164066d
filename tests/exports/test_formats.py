"""The export formats, read back as partners read them.

Pure tests of app/exports/formats.py, no database: CSV through libhxl (the HXL
standard's own library) and the csv module, XLSX through openpyxl, GeoJSON through
a GeoJSON validator (geojson-pydantic), JSON Lines line by line. Then streaming: the
first chunk leaves before the rows are read, and 200,000 rows go through in bounded
memory.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tracemalloc
import zipfile
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

import hxl
import openpyxl
import pytest
from geojson_pydantic import Feature, FeatureCollection, Point
from hypothesis import given
from hypothesis import strategies as st

from app.exports import formats
from app.exports.formats import (
    EXTENSIONS,
    MEDIA_TYPES,
    Column,
    Kind,
    Row,
    Rows,
    csv_chunks,
    geojson_chunks,
    jsonl_chunks,
    xlsx_chunks,
)

COLUMNS = (
    Column("household", "#meta +id"),
    Column("settlement_pcode", "#adm4+code"),
    Column("settlement", "#adm4 +name"),
    Column("address", "#loc +address"),
    Column("members", "#population +total", "int"),
    Column("members_change", "#population +change", "int"),
    Column("lat", "#geo +lat", "float"),
    Column("lon", "#geo +lon", "float"),
    Column("visited_at", "#date +occurred", "datetime"),
    Column("planned_departure", "#date +departure +planned", "date"),
    Column("consent", "#indicator +consent", "bool"),
    Column("reasons", "#indicator +reasons", "list"),
    Column("notes", "#description +notes"),
    Column("untagged", ""),
)
NAMES = [column.name for column in COLUMNS]
VISITED = datetime(2026, 11, 20, 9, 30, 5, tzinfo=UTC)
UKRAINIAN = "вул. Центральна, 12 · Прив'язаність · Купʼянськ · п’ять · 🇺🇦 евакуація 🚌"

FULL = {
    "household": "hh-0001",
    "settlement_pcode": "UA6308013001",
    "settlement": "Купʼянськ",
    "address": "вул. Центральна, 12",
    "members": 4,
    "members_change": -2,
    "lat": 49.7106,
    "lon": 37.6156,
    "visited_at": VISITED,
    "planned_departure": date(2026, 12, 1),
    "consent": True,
    "reasons": ["no_transport", "elderly_care"],
    "notes": UKRAINIAN,
    "untagged": "Прив'язаність",
    "_lon": 37.61,
    "_lat": 49.71,
}
EMPTY: dict[str, Any] = dict.fromkeys([*NAMES, "_lon", "_lat"])
ODD = {
    **FULL,
    "household": "hh-0003",
    "members": 0,
    "members_change": -3,
    "lat": math.nan,
    "lon": -0.5,
    "visited_at": datetime(2026, 11, 20, 11, 30, 5, 250_000, tzinfo=timezone(timedelta(hours=2))),
    "consent": False,
    "reasons": [],
    "notes": '=HYPERLINK("http://example.org")',
    "untagged": "",
    "_lon": math.inf,
}
SAMPLE = [FULL, EMPTY, ODD]


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


async def as_async(rows: Iterable[Row]) -> AsyncIterator[Row]:
    for row in rows:
        yield row


# CSV


async def test_csv_reads_back_with_libhxl(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(await collect(csv_chunks(COLUMNS, as_async(SAMPLE))))

    with hxl.data(str(path), hxl.InputOptions(allow_local=True)) as source:
        assert source.headers == NAMES
        assert source.display_tags == [
            "#meta+id",
            "#adm4+code",
            "#adm4+name",
            "#loc+address",
            "#population+total",
            "#population+change",
            "#geo+lat",
            "#geo+lon",
            "#date+occurred",
            "#date+departure+planned",
            "#indicator+consent",
            "#indicator+reasons",
            "#description+notes",
            "",
        ]
        rows = list(source)
    assert len(rows) == 3
    first = rows[0]
    assert first.get("#adm4+code") == "UA6308013001"
    assert first.get("#adm4+name") == "Купʼянськ"
    assert first.get("#loc+address") == "вул. Центральна, 12"
    assert first.get("#population+total") == "4"
    assert first.get("#population+change") == "-2"
    assert first.get("#date+occurred") == "2026-11-20T09:30:05Z"
    assert first.get("#description+notes") == UKRAINIAN
    assert rows[1].values == [""] * len(COLUMNS)
    assert rows[1].get("#adm4+code") is None  # libhxl reads an empty cell as None


async def test_csv_values_exactly() -> None:
    data = await collect(csv_chunks(COLUMNS, SAMPLE))

    assert not data.startswith(b"\xef\xbb\xbf")  # no BOM
    assert data.count(b"\r\n") == 5
    assert b"\n" not in data.replace(b"\r\n", b"")
    header, hashtags, full, empty, odd = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert header == NAMES
    assert hashtags == [column.hxl for column in COLUMNS]
    assert full == [
        "hh-0001",
        "UA6308013001",
        "Купʼянськ",
        "вул. Центральна, 12",
        "4",
        "-2",  # a number, not guarded
        "49.7106",
        "37.6156",
        "2026-11-20T09:30:05Z",
        "2026-12-01",
        "true",
        "no_transport elderly_care",
        UKRAINIAN,
        "Прив'язаність",
    ]
    assert empty == [""] * len(COLUMNS)
    assert odd[4:13] == [
        "0",
        "-3",
        "",  # NaN
        "-0.5",
        "2026-11-20T09:30:05.250000Z",  # in UTC
        "2026-12-01",
        "false",
        "",
        '\'=HYPERLINK("http://example.org")',
    ]
    assert 'hh-0001,UA6308013001,Купʼянськ,"вул. Центральна, 12",4,'.encode() in data


@pytest.mark.parametrize("text", ["=1+1", "+380501234567", "-1", "@SUM(A1)", "\tx", "\rx"])
async def test_csv_guards_formulas_in_text(text: str) -> None:
    columns = [Column("notes", "#description"), Column("count", "#affected", "int")]
    rows: list[Row] = [{"notes": text, "count": text}, {"notes": [text, "x"], "count": -7}]
    data = await collect(csv_chunks(columns, rows))

    _, _, strings, others = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert strings == ["'" + text, "'" + text]  # a string is guarded, whatever its column
    assert others == ["'" + text + " x", "-7"]  # a number never is


async def test_csv_accepts_str_subclasses_and_other_values() -> None:
    class Decision(StrEnum):
        leave = "leave"

    columns = [Column("a", "#a"), Column("b", "#b", "list"), Column("c", "#c", "int")]
    rows = [{"a": Decision.leave, "b": ("x", 2, date(2026, 1, 2)), "c": 10**20}]
    data = await collect(csv_chunks(columns, rows))

    assert data.decode().splitlines()[2] == "leave,x 2 2026-01-02,100000000000000000000"


# JSON Lines


async def test_jsonl_one_record_per_line() -> None:
    data = await collect(jsonl_chunks(COLUMNS, as_async(SAMPLE)))

    assert data.endswith(b"\n")
    lines = data.decode().splitlines()
    assert len(lines) == 3
    full, empty, odd = (json.loads(line) for line in lines)
    assert list(full) == NAMES  # no coordinates that are not columns
    assert full == {
        **{name: FULL[name] for name in NAMES},
        "visited_at": "2026-11-20T09:30:05Z",
        "planned_departure": "2026-12-01",
    }
    assert full["reasons"] == ["no_transport", "elderly_care"]
    assert full["notes"] == UKRAINIAN
    assert empty == dict.fromkeys(NAMES)
    assert odd["lat"] is None  # NaN
    assert odd["visited_at"] == "2026-11-20T09:30:05.250000Z"
    assert odd["reasons"] == []


# GeoJSON


async def test_geojson_is_a_valid_feature_collection() -> None:
    data = await collect(geojson_chunks(COLUMNS, as_async(SAMPLE), lon="_lon", lat="_lat"))

    collection = FeatureCollection[Feature[Point, dict[str, Any]]].model_validate_json(data)
    assert [feature.geometry for feature in collection.features] == [
        Point(type="Point", coordinates=(37.61, 49.71)),
        None,  # no coordinates
        None,  # an infinite longitude
    ]
    document = json.loads(data)
    assert document["type"] == "FeatureCollection"
    first = document["features"][0]
    assert first["geometry"] == {"type": "Point", "coordinates": [37.61, 49.71]}
    assert list(first["properties"]) == NAMES  # _lon and _lat are not columns
    assert first["properties"]["notes"] == UKRAINIAN
    assert first["properties"]["visited_at"] == "2026-11-20T09:30:05Z"
    assert document["features"][1]["properties"] == dict.fromkeys(NAMES)


async def test_geojson_coordinates_that_are_columns_stay_in_the_properties() -> None:
    columns = [Column("name", "#loc +name"), Column("lon", "#geo +lon", "float")]
    rows = [{"name": "Купʼянськ", "lon": 37.6, "lat": 49.7}]
    data = await collect(geojson_chunks(columns, rows, lon="lon", lat="lat"))

    FeatureCollection[Feature[Point, dict[str, Any]]].model_validate_json(data)
    assert json.loads(data)["features"][0]["properties"] == {"name": "Купʼянськ", "lon": 37.6}


async def test_geojson_without_rows_is_valid() -> None:
    data = await collect(geojson_chunks(COLUMNS, [], lon="_lon", lat="_lat"))

    collection = FeatureCollection[Feature[Point, dict[str, Any]]].model_validate_json(data)
    assert collection.features == []


# XLSX


def excel_date(year: int, month: int, day: int, *time: int) -> datetime:
    """A UTC instant as openpyxl reads an Excel date: without a zone."""
    hour, minute, second, microsecond = (*time, 0, 0, 0, 0)[:4]
    instant = datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)
    return instant.replace(tzinfo=None)


def read_xlsx(data: bytes) -> dict[str, list[tuple[Any, ...]]]:
    """Every sheet's rows, by sheet name."""
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    try:
        return {
            sheet.title: list(sheet.iter_rows(values_only=True)) for sheet in workbook.worksheets
        }
    finally:
        workbook.close()


async def test_xlsx_reads_back_with_openpyxl() -> None:
    data = await collect(xlsx_chunks(COLUMNS, as_async(SAMPLE)))

    sheets = read_xlsx(data)
    assert list(sheets) == ["data"]
    header, hashtags, full, empty, odd = sheets["data"]
    assert list(header) == NAMES
    assert list(hashtags) == [column.hxl or None for column in COLUMNS]
    assert list(full) == [
        "hh-0001",
        "UA6308013001",
        "Купʼянськ",
        "вул. Центральна, 12",
        4,
        -2,
        49.7106,
        37.6156,
        excel_date(2026, 11, 20, 9, 30, 5),  # a real date, in UTC
        excel_date(2026, 12, 1),  # openpyxl reads every Excel date as a datetime
        True,
        "no_transport elderly_care",
        UKRAINIAN,
        "Прив'язаність",
    ]
    assert isinstance(full[4], int)
    assert isinstance(full[6], float)
    assert list(empty) == [None] * len(COLUMNS)
    assert list(odd[4:13]) == [
        0,
        -3,
        None,  # NaN
        -0.5,
        excel_date(2026, 11, 20, 9, 30, 5, 250_000),
        excel_date(2026, 12, 1),
        False,
        None,  # no reasons: a blank cell, as in CSV
        '=HYPERLINK("http://example.org")',  # an inline string, never a formula
    ]


def sheet_xml(data: bytes, number: int = 1) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(f"xl/worksheets/sheet{number}.xml").decode()


async def test_xlsx_text_that_xml_cannot_carry_as_is() -> None:
    texts = [
        "bell\x07, nul\x00, esc\x1b, \ufffe, \uffff, lone \ud800 surrogate",
        "tab\tnew\nline\r\nkept",
        "<b>&amp;</b> & <script>",
        "  leading and trailing  ",
        "_x0041_ is not an A",
        "🇺🇦" * 20_000,  # 40,000 UTF-16 units: past a cell's 32,767
    ]
    columns = [Column("text", "#description")]
    data = await collect(xlsx_chunks(columns, [{"text": text} for text in texts]))

    values = [row[0] for row in read_xlsx(data)["data"][2:]]
    assert values[0] == "bell\ufffd, nul\ufffd, esc\ufffd, \ufffd, \ufffd, lone \ufffd surrogate"
    assert values[1:4] == texts[1:4]
    # OOXML reads `_xHHHH_` as an escaped character (Excel and LibreOffice show an A),
    # so a literal one is written with its underscore escaped; openpyxl does not
    # unescape, which shows the escape.
    assert values[4] == "_x005F_x0041_ is not an A"
    assert values[5] == "🇺🇦" * 8191 + "\U0001f1fa"  # 32,766 units, no half of a pair
    assert '<t xml:space="preserve">  leading' in sheet_xml(data)


async def test_xlsx_numbers_and_dates_excel_cannot_hold_are_text() -> None:
    columns = [Column("id", "#meta +id", "int"), Column("day", "#date", "date")]
    rows = [
        {"id": 10**15, "day": date(1900, 2, 28)},
        {"id": 10**15 - 1, "day": date(1900, 3, 1)},
    ]
    data = await collect(xlsx_chunks(columns, rows))

    assert read_xlsx(data)["data"][2:] == [
        ("1000000000000000", "1900-02-28"),
        (999_999_999_999_999, excel_date(1900, 3, 1)),
    ]


async def test_xlsx_twenty_thousand_rows_count_exact() -> None:
    data = await collect(xlsx_chunks(COLUMNS, as_async(households(20_000))))

    rows = read_xlsx(data)["data"]
    assert len(rows) == 20_002
    assert [row[0] for row in rows[2:]] == [f"hh-{index:07d}" for index in range(20_000)]
    assert rows[-1][2:5] == ("Купʼянськ", "вул. Центральна, 199", 19_999 % 7)


async def test_xlsx_goes_on_in_a_new_sheet_when_one_is_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(formats, "_SHEET_ROWS", 12)  # 2 header rows and 10 rows
    data = await collect(xlsx_chunks(COLUMNS, as_async(households(25))))

    sheets = read_xlsx(data)
    assert list(sheets) == ["data", "data 2", "data 3"]
    assert [len(rows) for rows in sheets.values()] == [12, 12, 7]
    for rows in sheets.values():
        assert list(rows[0]) == NAMES
        assert list(rows[1]) == [column.hxl or None for column in COLUMNS]
    ids = [row[0] for rows in sheets.values() for row in rows[2:]]
    assert ids == [f"hh-{index:07d}" for index in range(25)]


async def test_xlsx_goes_on_in_a_new_sheet_before_a_zip_entry_needs_zip64(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(formats, "_SHEET_BYTES", 300_000)
    data = await collect(xlsx_chunks(COLUMNS, as_async(households(3_000))))

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sizes = [
            info.file_size for info in archive.infolist() if info.filename.startswith("xl/work")
        ]
    sheets = read_xlsx(data)
    assert len(sheets) > 2
    assert all(size <= 300_000 for size in sizes)
    ids = [row[0] for rows in sheets.values() for row in rows[2:]]
    assert ids == [f"hh-{index:07d}" for index in range(3_000)]


async def test_xlsx_parts_and_their_order() -> None:
    first = await collect(xlsx_chunks(COLUMNS, SAMPLE))
    again = await collect(xlsx_chunks(COLUMNS, as_async(SAMPLE)))

    assert first == again  # the same rows make the same bytes
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        content_types = archive.read("[Content_Types].xml").decode()
    # A workbook's first entries, as file(1) and other sniffers look for them.
    assert names == [
        "_rels/.rels",
        "xl/styles.xml",
        "xl/worksheets/sheet1.xml",
        "xl/workbook.xml",
        "xl/_rels/workbook.xml.rels",
        "[Content_Types].xml",
    ]
    assert 'PartName="/xl/worksheets/sheet1.xml"' in content_types


# Every format


FORMATS: dict[str, Callable[[Any, Rows], AsyncIterator[bytes]]] = {
    "csv": csv_chunks,
    "jsonl": jsonl_chunks,
    "geojson": lambda columns, rows: geojson_chunks(columns, rows, lon="_lon", lat="_lat"),
    "xlsx": xlsx_chunks,
}


def test_media_types_and_extensions() -> None:
    assert MEDIA_TYPES == {
        "csv": "text/csv; charset=utf-8",
        "jsonl": "application/x-ndjson",
        "geojson": "application/geo+json",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
    assert EXTENSIONS == {"csv": "csv", "jsonl": "jsonl", "geojson": "geojson", "xlsx": "xlsx"}


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([], "at least one column"),
        ([Column("a", "#a"), Column("b", "#b"), Column("a", "#c")], "duplicate column names: a"),
    ],
)
@pytest.mark.parametrize("name", list(FORMATS))
def test_bad_columns_fail_before_the_stream_starts(
    name: str, columns: list[Column], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        FORMATS[name](columns, [])


@pytest.mark.parametrize(
    ("name", "hxl", "kind"),
    [("", "#a", "text"), ("a", "adm1", "text"), ("a", "#adm1 code", "text"), ("a", "#a", "money")],
)
def test_a_column_is_checked_when_made(name: str, hxl: str, kind: Any) -> None:
    with pytest.raises(ValueError, match=r"column|name"):
        Column(name, hxl, kind)


@pytest.mark.parametrize("name", list(FORMATS))
async def test_a_naive_datetime_is_refused(name: str) -> None:
    row = {**FULL, "visited_at": datetime(2026, 11, 20, 9, 30)}  # noqa: DTZ001
    with pytest.raises(ValueError, match="naive datetime"):
        await collect(FORMATS[name](COLUMNS, [row]))


@pytest.mark.parametrize("name", list(FORMATS))
async def test_a_row_without_a_column_is_refused(name: str) -> None:
    row = {key: value for key, value in FULL.items() if key != "notes"}
    with pytest.raises(KeyError, match="notes"):
        await collect(FORMATS[name](COLUMNS, [row]))


@pytest.mark.parametrize("name", list(FORMATS))
async def test_a_lone_surrogate_becomes_a_replacement_character(name: str) -> None:
    row = {**FULL, "notes": "half a pair: \ud83c!", "reasons": ["\udc00"]}
    data = await collect(FORMATS[name](COLUMNS, [row]))

    if name == "xlsx":
        assert read_xlsx(data)["data"][2][11:13] == ("\ufffd", "half a pair: \ufffd!")
    else:
        assert "half a pair: \ufffd!".encode() in data
        data.decode()  # valid UTF-8 throughout


@pytest.mark.parametrize("name", list(FORMATS))
async def test_sync_and_async_rows_make_the_same_bytes(name: str) -> None:
    assert await collect(FORMATS[name](COLUMNS, SAMPLE)) == await collect(
        FORMATS[name](COLUMNS, as_async(SAMPLE))
    )


@pytest.mark.parametrize("name", list(FORMATS))
async def test_the_rows_are_closed_when_the_stream_is_abandoned(name: str) -> None:
    closed = []

    async def rows() -> AsyncIterator[Row]:
        try:
            for row in households(100_000):
                yield row
        finally:
            closed.append(True)

    chunks = FORMATS[name](COLUMNS, rows())
    assert isinstance(chunks, AsyncGenerator)
    await anext(chunks)
    await anext(chunks)
    await chunks.aclose()
    assert closed == [True]


VALUES = st.one_of(
    st.none(),
    st.text(),
    st.sampled_from(["=1", "-2", " x", "x ", "a & b", "_x0041_", "\x01", "\ud800"]),
    st.integers(min_value=-(10**16), max_value=10**16),
    st.floats(),
    st.booleans(),
    st.dates(),
    st.datetimes(
        min_value=datetime(1800, 1, 1),  # noqa: DTZ001  (bounds; the values get a zone)
        max_value=datetime(2200, 1, 1),  # noqa: DTZ001
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=3))]),
    ),
    st.lists(st.text(max_size=5), max_size=3),
    st.lists(st.integers(), max_size=3),
)


@given(st.lists(VALUES, min_size=7, max_size=7))
def test_the_generated_row_functions_agree_with_the_kinds(values: list[Any]) -> None:
    """`formats._row_function` writes each kind's common case inline: it must give
    what the kind's function gives for every value."""
    kinds: tuple[Kind, ...] = ("text", "int", "float", "date", "datetime", "bool", "list")
    columns = tuple(Column(f"c{index}", "", kind) for index, kind in enumerate(kinds))
    row = {column.name: value for column, value in zip(columns, values, strict=True)}

    def csv_line(cells: list[Any]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer).writerow(cells)
        return buffer.getvalue()

    csv_cells = formats._row_function(
        columns, formats._CSV_CELLS, formats._CSV_INLINE, formats._CSV_NAMESPACE
    )
    expected = [formats._CSV_CELLS[c.kind](v) for c, v in zip(columns, values, strict=True)]
    assert csv_line(csv_cells(row)) == csv_line(expected)

    xlsx_cells = formats._row_function(
        columns, formats._XLSX_CELLS, formats._XLSX_INLINE, formats._XLSX_NAMESPACE
    )
    expected = [formats._XLSX_CELLS[c.kind](v) for c, v in zip(columns, values, strict=True)]
    assert xlsx_cells(row) == expected


# Streaming


def households(count: int) -> Iterator[dict[str, Any]]:
    """Rows like a households export's, made one at a time."""
    for index in range(count):
        yield {
            "household": f"hh-{index:07d}",
            "settlement_pcode": "UA6308013001",
            "settlement": "Купʼянськ",
            "address": f"вул. Центральна, {index % 300}",
            "members": index % 7,
            "members_change": index % 5 - 2,
            "lat": round(49.7106 + index * 1e-6, 6),
            "lon": round(37.6156 - index * 1e-6, 6),
            "visited_at": VISITED + timedelta(seconds=index),
            "planned_departure": date(2026, 12, 1) + timedelta(days=index % 30),
            "consent": index % 2 == 0,
            "reasons": ["no_transport", "elderly_care"][: index % 3],
            "notes": "Потрібен транспорт: двоє літніх, 2 валізи" if index % 4 == 0 else "",
            "untagged": "Прив'язаність",
            "_lon": 37.6,
            "_lat": 49.7,
        }


class Counted:
    """200,000 rows read lazily from an async generator, counting those read."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.read = 0

    async def rows(self) -> AsyncIterator[Row]:
        for row in households(self.count):
            self.read += 1
            yield row


@pytest.mark.parametrize("name", list(FORMATS))
async def test_the_first_chunk_leaves_before_the_rows_are_read(name: str) -> None:
    source = Counted(200_000)
    chunks = FORMATS[name](COLUMNS, source.rows())
    assert isinstance(chunks, AsyncGenerator)

    await anext(chunks)
    # The header needs no row; JSON Lines has no header and sends its first line.
    assert source.read == (1 if name == "jsonl" else 0)
    await anext(chunks)
    assert 0 < source.read < 10_000  # the next one after a chunk's worth of rows
    await chunks.aclose()


#: Three times what a streaming export holds (under 1 MiB with these rows), and less
#: than either whole file, so an export that held its output would fail.
MEMORY_BOUND = 3 * 1024 * 1024


async def peak_memory_streaming(
    name: str, count: int, write: Callable[[bytes], object]
) -> tuple[int, int]:
    """The peak of traced memory while `count` rows go through, and the bytes made.

    The rows come lazily from a thousand made beforehand, so that what is traced is
    the export's own memory, and the test takes seconds rather than a minute.
    """
    pool = list(households(1_000))

    async def rows() -> AsyncIterator[Row]:
        for index in range(count):
            yield pool[index % len(pool)]

    made = 0
    tracemalloc.start()
    try:
        async for chunk in FORMATS[name](COLUMNS, rows()):
            write(chunk)
            made += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, made


async def test_csv_of_200_000_rows_streams_in_bounded_memory() -> None:
    peak, made = await peak_memory_streaming("csv", 200_000, len)

    assert peak < MEMORY_BOUND
    assert made > MEMORY_BOUND  # the whole file would not fit


async def test_xlsx_of_80_000_rows_streams_in_bounded_memory(tmp_path: Path) -> None:
    """Fewer rows than CSV: traced, the XLSX writer runs ten times slower."""
    path = tmp_path / "export.xlsx"
    with path.open("wb", buffering=0) as file:
        peak, made = await peak_memory_streaming("xlsx", 80_000, file.write)

    assert peak < MEMORY_BOUND
    assert made > MEMORY_BOUND  # the whole file would not fit, nor its sheet's XML:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.getinfo("xl/worksheets/sheet1.xml").file_size > 10 * MEMORY_BOUND
