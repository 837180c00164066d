"""Export formats: rows in, a stream of bytes out, in constant memory.

Each `*_chunks` function takes the columns and an iterable of rows (sync, or async
such as a generator over a server-side cursor) and returns an async iterator of byte
chunks for a streaming HTTP response. The header leaves as a chunk of its own before
any row is read, so the first byte goes at once; after it rows are gathered into
chunks of about `CHUNK_SIZE` bytes, and nothing holds more than about one chunk,
whatever the number of rows. The columns are checked when the function is called (a
bad one is a `ValueError` before the response starts); the rows are read as the
stream is, and the rows iterator is closed when the stream ends or is abandoned.

A row maps every column's name to its value (a missing name is a `KeyError`): `None`
is an empty cell, a list (or tuple) holds a `list` column's values, and datetimes
are aware (a naive one is a `ValueError`: its zone would be a guess) and written in
UTC. The column's `kind` is the type its values are expected to have; a value of
another type is written as its own type says (a string in an `int` column stays a
string, and in CSV is guarded like any other).

- **CSV**: UTF-8 without a BOM, RFC 4180 (`\\r\\n`, minimal quoting): the header
  row, the HXL hashtag row, then the data. A list is one cell with its values
  separated by spaces, as HXL tools split such cells (`#affected+list`); the values
  FieldSync exports in lists (codes such as `no_transport`) hold no spaces.
  Datetimes are ISO 8601 in UTC with `Z` (with microseconds only when the instant
  has some), dates ISO, booleans `true`/`false`; NaN and infinities are empty. A
  string that begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a
  leading `'`, so that a spreadsheet does not run it as a formula (OWASP, "CSV
  Injection"); numbers are never touched, so `-3` stays a number.
- **JSON Lines**: one object per line and nothing else (no HXL line): keys are the
  column names, lists are arrays, datetimes ISO 8601 UTC with `Z`, NaN is `null`.
- **GeoJSON**: one FeatureCollection (RFC 7946), a Feature per row whose geometry is
  a Point at the row's `lon` and `lat` keys, or `null` when either is missing or
  not finite; the properties are the columns, as in JSON Lines.
- **XLSX**: an Office Open XML workbook whose parts are written one after another
  into a zip stream (its data descriptors let it go out without seeking back). Row
  1 is the header (bold), row 2 the HXL hashtags, both frozen. Numbers are numbers,
  booleans booleans, dates and datetimes real Excel dates in UTC, shown as
  `yyyy-mm-dd` and `yyyy-mm-dd hh:mm:ss "UTC"` (before 1900-03-01, where Excel's
  calendar is wrong, they are ISO text); everything else is an inline string.
  Integers of more than 15 digits are text, as Excel keeps only 15 significant
  digits. Characters XML 1.0 forbids become U+FFFD, and text past a cell's 32,767
  characters is cut there. Past Excel's 1,048,576 rows, or near the 2 GiB a zip
  entry holds without ZIP64 (which Excel reads only in a dialect of its own), the
  data go on in a new sheet (`data 2`, ...) with its own header rows.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import IO, Any, Literal, NamedTuple, Protocol, get_args

import orjson

Kind = Literal["text", "int", "float", "date", "datetime", "bool", "list"]
Row = Mapping[str, Any]
Rows = Iterable[Row] | AsyncIterable[Row]

#: Rows are gathered into chunks of about this many bytes.
CHUNK_SIZE = 64 * 1024

MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",
    "geojson": "application/geo+json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
#: File name extensions, without the dot.
EXTENSIONS: dict[str, str] = {"csv": "csv", "jsonl": "jsonl", "geojson": "geojson", "xlsx": "xlsx"}

_KINDS = frozenset(get_args(Kind))
_HXL_HASHTAG = re.compile(r"#[A-Za-z][A-Za-z0-9_]*(\s*\+[A-Za-z][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class Column:
    """One exported column: its header, its HXL hashtag and the kind of its values.

    `hxl` is a hashtag with attributes (`#adm4+code`, `#adm4 +code`), or "" for a
    column HXL has no tag for (its cell in the hashtag row stays empty).
    """

    name: str
    hxl: str
    kind: Kind = "text"

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a column needs a name")
        if self.hxl and not _HXL_HASHTAG.fullmatch(self.hxl):
            raise ValueError(f"column {self.name!r}: {self.hxl!r} is not an HXL hashtag")
        if self.kind not in _KINDS:
            raise ValueError(f"column {self.name!r}: unknown kind {self.kind!r}")


def _checked(columns: Sequence[Column]) -> tuple[Column, ...]:
    columns = tuple(columns)
    if not columns:
        raise ValueError("an export needs at least one column")
    names = [column.name for column in columns]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate column names: {', '.join(duplicates)}")
    return columns


# Values as text, for CSV and XLSX.


def _in_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    if value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()}: exports need aware ones")
    return value.astimezone(UTC)


def _utc_iso(value: datetime) -> str:
    """`2024-05-01T10:00:00Z`, or `...T10:00:00.250000Z` when it has microseconds."""
    return _in_utc(value).isoformat()[:-6] + "Z"  # "+00:00" becomes "Z"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _plain_text(value: Any) -> str:
    """Any value as text (a str subclass, such as a StrEnum, as its plain value)."""
    if isinstance(value, str):
        return str.__str__(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else ""
    if isinstance(value, datetime):
        return _utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return " ".join(_plain_text(item) for item in items)
    return str(value)


_SURROGATES = re.compile("[\ud800-\udfff]")


def _encode(text: str) -> bytes:
    """UTF-8; a lone surrogate, which UTF-8 cannot carry, becomes U+FFFD."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", text).encode()


class _Inline(NamedTuple):
    """The common case of a kind's cells, as source: when `type(v) is type_` and
    `test` hold for the value `v`, the cell is `result`."""

    type_: str
    test: str
    result: str


def _row_function(
    columns: tuple[Column, ...],
    cells: Mapping[str, Callable[[Any], Any]],
    inline: Mapping[str, _Inline],
    namespace: Mapping[str, Any],
) -> Callable[[Row], list[Any]]:
    """A function from a row to its cells, `[cells[kind](row[name]), ...]`.

    It is generated, as `dataclasses` generates `__init__`, so that the common case
    of a cell (a str in a text column, an int in an int column) costs a test written
    inline rather than a function call: that saves a quarter of the time of a CSV
    row. Every other value goes to its kind's function, which gives the same result
    for the common case too (the tests compare them). Column names enter the source
    only as `repr()` literals; the rest is the fixed text of `inline`.
    """
    scope = dict(namespace)
    expressions = []
    for index, column in enumerate(columns):
        cell = f"cell{index}"
        scope[cell] = cells[column.kind]
        value = f"row[{column.name!r}]"
        common = inline.get(column.kind)
        if common is None:
            expressions.append(f"{cell}({value})")
        else:
            expressions.append(
                f"{common.result} if type(v := {value}) is {common.type_} and {common.test}"
                f" else {cell}(v)"
            )
    source = "def cells(row):\n    return [\n        " + ",\n        ".join(expressions) + "\n    ]"
    exec(source, scope)  # noqa: S102  (fixed templates; names as repr() literals)
    function: Callable[[Row], list[Any]] = scope["cells"]
    return function


# The driver: one loop for every format.


class _Encoder(Protocol):
    def start(self) -> bytes: ...

    def add(self, row: Row) -> bytes | None: ...

    def finish(self) -> bytes: ...


async def _stream(encoder: _Encoder, rows: Rows) -> AsyncIterator[bytes]:
    """The header at once, then a chunk whenever the encoder has one, then the tail.

    The rows iterator is closed however the stream ends, so that a server-side
    cursor behind it is released even when the client goes away.
    """
    try:
        head = encoder.start()
        if head:
            yield head
        if isinstance(rows, AsyncIterable):
            async for row in rows:
                chunk = encoder.add(row)
                if chunk is not None:
                    yield chunk
        else:
            for row in rows:
                chunk = encoder.add(row)
                if chunk is not None:
                    yield chunk
        tail = encoder.finish()
        if tail:
            yield tail
    finally:
        if isinstance(rows, AsyncIterable):
            aclose = getattr(rows, "aclose", None)
            if aclose is not None:
                await aclose()
        else:
            close = getattr(rows, "close", None)
            if close is not None:
                close()


# CSV


#: What a spreadsheet may take for the start of a formula: a text cell starting so gets a
#: leading `'` (sql_csv.py applies the same rule in SQL).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def guarded(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_any(value: Any) -> Any:
    if value is None:
        return None  # the csv module writes None as an empty field
    text = _plain_text(value)
    return text if _is_number(value) else guarded(text)


def _csv_list(value: Any) -> Any:
    if type(value) is list:
        try:
            return guarded(" ".join(value))
        except TypeError:  # not only strings
            pass
    return _csv_any(value)


_CSV_CELLS: dict[str, Callable[[Any], Any]] = {
    "text": _csv_any,
    "int": _csv_any,
    "float": _csv_any,
    "date": _csv_any,
    "datetime": _csv_any,
    "bool": _csv_any,
    "list": _csv_list,
}
# The csv module writes an int or a float itself (a float as repr()).
_CSV_INLINE: dict[str, _Inline] = {
    "text": _Inline("str", "not v.startswith(FORMULA)", "v"),
    "int": _Inline("int", "True", "v"),
    "float": _Inline("float", "isfinite(v)", "v"),
    "date": _Inline("date", "True", "v.isoformat()"),
    "datetime": _Inline("datetime", "v.tzinfo is UTC", "v.isoformat()[:-6] + 'Z'"),
    "bool": _Inline("bool", "True", "('true' if v else 'false')"),
}
_CSV_NAMESPACE: dict[str, Any] = {
    "FORMULA": FORMULA_STARTS,
    "isfinite": math.isfinite,
    "date": date,
    "datetime": datetime,
    "UTC": UTC,
}


class _CsvEncoder:
    def __init__(self, columns: tuple[Column, ...]) -> None:
        self._columns = columns
        self._cells = _row_function(columns, _CSV_CELLS, _CSV_INLINE, _CSV_NAMESPACE)
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def _take(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return _encode(text)

    def start(self) -> bytes:
        self._writer.writerow([column.name for column in self._columns])
        self._writer.writerow([column.hxl for column in self._columns])
        return self._take()

    def add(self, row: Row) -> bytes | None:
        self._writer.writerow(self._cells(row))
        return self._take() if self._buffer.tell() >= CHUNK_SIZE else None

    def finish(self) -> bytes:
        return self._take()


def csv_chunks(columns: Sequence[Column], rows: Rows) -> AsyncIterator[bytes]:
    """CSV with the HXL hashtag row under the header (see the module's docstring)."""
    return _stream(_CsvEncoder(_checked(columns)), rows)


def csv_head(columns: Sequence[Column]) -> bytes:
    """The two lines a CSV starts with: the header and the HXL hashtag row."""
    return _CsvEncoder(_checked(columns)).start()


# JSON Lines and GeoJSON


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _utc_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"cannot export a {type(value).__name__}")


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, list | tuple):
        return [_without_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {key: _without_surrogates(item) for key, item in value.items()}
    return value


def _json(value: dict[str, Any], option: int) -> bytes:
    """orjson, with our datetimes; a lone surrogate (not UTF-8) becomes U+FFFD."""
    option |= orjson.OPT_PASSTHROUGH_DATETIME
    try:
        return orjson.dumps(value, default=_json_default, option=option)
    except orjson.JSONEncodeError as error:
        if isinstance(error.__cause__, ValueError):  # a naive datetime
            raise error.__cause__ from None
        if "surrogates" not in str(error):
            raise
        return orjson.dumps(_without_surrogates(value), default=_json_default, option=option)


class _JsonLinesEncoder:
    def __init__(self, columns: tuple[Column, ...]) -> None:
        self._names = [column.name for column in columns]
        self._lines: list[bytes] = []
        self._size = 0
        self._started = False

    def _take(self) -> bytes:
        chunk = b"".join(self._lines)
        self._lines.clear()
        self._size = 0
        return chunk

    def start(self) -> bytes:
        return b""  # no header: the first line goes as soon as it is read

    def add(self, row: Row) -> bytes | None:
        line = _json({name: row[name] for name in self._names}, orjson.OPT_APPEND_NEWLINE)
        self._lines.append(line)
        self._size += len(line)
        if self._size < CHUNK_SIZE and self._started:
            return None
        self._started = True
        return self._take()

    def finish(self) -> bytes:
        return self._take()


def jsonl_chunks(columns: Sequence[Column], rows: Rows) -> AsyncIterator[bytes]:
    """JSON Lines: one object per row, keyed by column name."""
    return _stream(_JsonLinesEncoder(_checked(columns)), rows)


def _coordinate(value: Any, key: str) -> float | None:
    if value is None:
        return None
    if not _is_number(value):
        raise TypeError(f"{key!r} holds a {type(value).__name__}, not a coordinate")
    number = float(value)
    return number if math.isfinite(number) else None


class _GeoJsonEncoder:
    def __init__(self, columns: tuple[Column, ...], lon: str, lat: str) -> None:
        self._names = [column.name for column in columns]
        self._lon = lon
        self._lat = lat
        self._features: list[bytes] = []
        self._size = 0
        self._separator = b"\n"

    def _take(self) -> bytes:
        chunk = b"".join(self._features)
        self._features.clear()
        self._size = 0
        return chunk

    def start(self) -> bytes:
        return b'{"type":"FeatureCollection","features":['

    def add(self, row: Row) -> bytes | None:
        lon = _coordinate(row[self._lon], self._lon)
        lat = _coordinate(row[self._lat], self._lat)
        feature = {
            "type": "Feature",
            "geometry": None
            if lon is None or lat is None
            else {"type": "Point", "coordinates": [lon, lat]},
            "properties": {name: row[name] for name in self._names},
        }
        data = _json(feature, 0)
        self._features.append(self._separator)
        self._features.append(data)
        self._separator = b",\n"
        self._size += len(data) + 2
        return self._take() if self._size >= CHUNK_SIZE else None

    def finish(self) -> bytes:
        return self._take() + b"\n]}\n"


def geojson_chunks(
    columns: Sequence[Column], rows: Rows, *, lon: str, lat: str
) -> AsyncIterator[bytes]:
    """A GeoJSON FeatureCollection of Points at each row's `lon` and `lat` keys.

    The coordinate keys need not be columns; they are among the properties only if
    they are.
    """
    return _stream(_GeoJsonEncoder(_checked(columns), lon, lat), rows)


# XLSX
#
# Text is written as inline strings (`t="inlineStr"`), which Excel never evaluates,
# so unlike CSV it needs no formula guard: `=1+1` shows as `=1+1`.

#: Excel's rows per sheet, and the size a sheet's XML stays under: a zip entry
#: past 2 GiB needs ZIP64, which Python writes in a layout Excel refuses.
_SHEET_ROWS = 1_048_576
_SHEET_BYTES = 2_000_000_000
_SHEET_NAME = "data"
_MAX_COLUMNS = 16_384
_CELL_CHARS = 32_767
_EXACT_INTEGERS = 10**15  # Excel keeps 15 significant digits
_EXCEL_EPOCH = datetime(1899, 12, 30, tzinfo=UTC)
_EXCEL_EPOCH_ORDINAL = date(1899, 12, 30).toordinal()
# Excel counts a 29 February 1900 that never was: its serials are right from 61 on.
_EXCEL_FIRST_DATE = date(1900, 3, 1)
_EXCEL_FIRST_DATETIME = datetime(1900, 3, 1, tzinfo=UTC)
_DAY = timedelta(days=1)

# Cell styles: indexes into cellXfs in _STYLES.
_HEADER_STYLE = 1
_DATE_STYLE = 2
_DATETIME_STYLE = 3

_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_CONTENT_TYPES_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
_SPREADSHEETML = "application/vnd.openxmlformats-officedocument.spreadsheetml"

_PACKAGE_RELS = (
    f'{_XML_DECLARATION}<Relationships xmlns="{_PACKAGE_REL_NS}">'
    f'<Relationship Id="rId1" Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_STYLES = (
    f'{_XML_DECLARATION}<styleSheet xmlns="{_MAIN_NS}">'
    '<numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
    '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss &quot;UTC&quot;"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="4"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)

# Characters XML 1.0 cannot carry. And `_xHHHH_`, which OOXML reads as an escaped
# character: a literal one keeps its underscore as `_x005F_` (ECMA-376, ST_Xstring).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_OOXML_ESCAPE = re.compile("_(?=x[0-9A-Fa-f]{4}_)")
# Anything that needs more than copying: what the two above change, what XML
# escapes (a carriage return too, which XML parsers would turn into a line feed),
# and white space at either end (which needs xml:space="preserve").
_XLSX_NOT_PLAIN = re.compile(
    "[\x00-\x08\x0b\x0c\x0d\x0e-\x1f\ud800-\udfff\ufffe\uffff&<>]|_x|^[ \t\n]|[ \t\n]$"
)
_EDGE_SPACE = (" ", "\t", "\n", "&#13;")


def _utf16_cut(text: str) -> str:
    """At most 32,767 characters as Excel counts them, in UTF-16 code units."""
    encoded = text.encode("utf-16-le", "surrogatepass")
    if len(encoded) <= 2 * _CELL_CHARS:
        return text
    cut = encoded[: 2 * _CELL_CHARS]
    if 0xD800 <= int.from_bytes(cut[-2:], "little") <= 0xDBFF:
        cut = cut[:-2]  # never half of a pair (an emoji)
    return cut.decode("utf-16-le", "surrogatepass")


def _xlsx_string(text: str, style: str = "") -> str:
    if not text:
        return "<c/>"  # blank, as in CSV, rather than a cell holding ""
    if len(text) > _CELL_CHARS // 2:  # may be too long in UTF-16
        text = _utf16_cut(text)
    space = ""
    if _XLSX_NOT_PLAIN.search(text) is not None:
        text = _XML_ILLEGAL.sub("\ufffd", text)
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        text = _OOXML_ESCAPE.sub("_x005F_", text).replace("\r", "&#13;")
        if text.startswith(_EDGE_SPACE) or text.endswith(_EDGE_SPACE):
            space = ' xml:space="preserve"'
    return f'<c t="inlineStr"{style}><is><t{space}>{text}</t></is></c>'


def _xlsx_any(value: Any) -> str:
    if value is None:
        return "<c/>"
    if isinstance(value, str):
        return _xlsx_string(str.__str__(value))
    if isinstance(value, bool):
        return '<c t="b"><v>1</v></c>' if value else '<c t="b"><v>0</v></c>'
    if isinstance(value, int):
        if -_EXACT_INTEGERS < value < _EXACT_INTEGERS:
            return "<c><v>" + str(int(value)) + "</v></c>"
        return _xlsx_string(str(int(value)))
    if isinstance(value, float):
        return "<c><v>" + repr(value) + "</v></c>" if math.isfinite(value) else "<c/>"
    if isinstance(value, Decimal):
        return "<c><v>" + str(value) + "</v></c>" if value.is_finite() else "<c/>"
    if isinstance(value, datetime):
        value = _in_utc(value)
        if value < _EXCEL_FIRST_DATETIME:
            return _xlsx_string(_utc_iso(value))
        return f'<c s="{_DATETIME_STYLE}"><v>{(value - _EXCEL_EPOCH) / _DAY!r}</v></c>'
    if isinstance(value, date):
        if value < _EXCEL_FIRST_DATE:
            return _xlsx_string(value.isoformat())
        return f'<c s="{_DATE_STYLE}"><v>{value.toordinal() - _EXCEL_EPOCH_ORDINAL}</v></c>'
    return _xlsx_string(_plain_text(value))


def _xlsx_list(value: Any) -> str:
    if type(value) is list:
        try:
            return _xlsx_string(" ".join(value))
        except TypeError:  # not only strings
            pass
    return _xlsx_any(value)


_XLSX_CELLS: dict[str, Callable[[Any], str]] = {
    "text": _xlsx_any,
    "int": _xlsx_any,
    "float": _xlsx_any,
    "date": _xlsx_any,
    "datetime": _xlsx_any,
    "bool": _xlsx_any,
    "list": _xlsx_list,
}
# The cells are f-strings (in the generated source), which make one new string
# where + would make several.
_XLSX_INLINE: dict[str, _Inline] = {
    "text": _Inline(
        "str",
        "0 < len(v) <= SHORT and NOT_PLAIN(v) is None",
        """f'<c t="inlineStr"><is><t>{v}</t></is></c>'""",
    ),
    "int": _Inline("int", "-EXACT < v < EXACT", "f'<c><v>{v}</v></c>'"),
    "float": _Inline("float", "isfinite(v)", "f'<c><v>{v!r}</v></c>'"),
    "date": _Inline(
        "date",
        "v >= FIRST_DATE",
        f"""f'<c s="{_DATE_STYLE}"><v>{{v.toordinal() - EPOCH_ORDINAL}}</v></c>'""",
    ),
    "datetime": _Inline(
        "datetime",
        "v.tzinfo is UTC and v >= FIRST_DATETIME",
        f"""f'<c s="{_DATETIME_STYLE}"><v>{{(v - EPOCH) / DAY!r}}</v></c>'""",
    ),
}
_XLSX_NAMESPACE: dict[str, Any] = {
    "SHORT": _CELL_CHARS // 2,
    "NOT_PLAIN": _XLSX_NOT_PLAIN.search,
    "EXACT": _EXACT_INTEGERS,
    "isfinite": math.isfinite,
    "date": date,
    "datetime": datetime,
    "UTC": UTC,
    "FIRST_DATE": _EXCEL_FIRST_DATE,
    "FIRST_DATETIME": _EXCEL_FIRST_DATETIME,
    "EPOCH": _EXCEL_EPOCH,
    "EPOCH_ORDINAL": _EXCEL_EPOCH_ORDINAL,
    "DAY": _DAY,
}
_XLSX_WIDTHS: dict[str, int] = {"date": 12, "datetime": 25}


class _Sink:
    """A write-only, unseekable file for `zipfile`, drained after each batch of rows."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def __len__(self) -> int:
        return len(self._buffer)

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


class _XlsxEncoder:
    """The workbook's parts, in this order: `_rels/.rels` and `xl/styles.xml` (so
    that tools which sniff a zip's first entries see a workbook), the sheets, then
    `xl/workbook.xml`, its relationships and `[Content_Types].xml`, which name the
    sheets and so wait until the last row has said how many there are."""

    def __init__(self, columns: tuple[Column, ...]) -> None:
        if len(columns) > _MAX_COLUMNS:
            raise ValueError(f"an Excel sheet holds at most {_MAX_COLUMNS} columns")
        self._columns = columns
        self._cells = _row_function(columns, _XLSX_CELLS, _XLSX_INLINE, _XLSX_NAMESPACE)
        self._rows: list[str] = []
        self._batch = 0
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w", zipfile.ZIP_DEFLATED, compresslevel=1)
        self._part("_rels/.rels", _PACKAGE_RELS)
        self._part("xl/styles.xml", _STYLES)
        self._sheets = 0
        self._sheet_rows = 0
        self._sheet_bytes = 0
        self._sheet = self._open_sheet()

    def _part(self, name: str, text: str) -> None:
        # Dated 1980-01-01 like the sheets (zipfile's default), so that the same rows
        # make the same bytes.
        self._zip.writestr(zipfile.ZipInfo(name), text, zipfile.ZIP_DEFLATED, 1)

    def _open_sheet(self) -> IO[bytes]:
        self._sheets += 1
        sheet = self._zip.open(f"xl/worksheets/sheet{self._sheets}.xml", "w")
        widths = "".join(
            f'<col min="{number}" max="{number}" width="{width}" customWidth="1"/>'
            for number, column in enumerate(self._columns, start=1)
            if (width := _XLSX_WIDTHS.get(column.kind)) is not None
        )
        bold = f' s="{_HEADER_STYLE}"'
        head = (
            f'{_XML_DECLARATION}<worksheet xmlns="{_MAIN_NS}">'
            '<sheetViews><sheetView workbookViewId="0">'
            '<pane ySplit="2" topLeftCell="A3" activePane="bottomLeft" state="frozen"/>'
            "</sheetView></sheetViews>"
            + (f"<cols>{widths}</cols>" if widths else "")
            + "<sheetData><row>"
            + "".join(_xlsx_string(column.name, bold) for column in self._columns)
            + "</row><row>"
            + "".join(_xlsx_string(column.hxl) for column in self._columns)
            + "</row>"
        )
        data = _encode(head)
        sheet.write(data)
        self._sheet_rows = 2
        self._sheet_bytes = len(data)
        return sheet

    def _next_sheet(self) -> None:
        self._sheet.write(b"</sheetData></worksheet>")
        self._sheet.close()
        self._sheet = self._open_sheet()

    def _write_rows(self) -> None:
        data = _encode("".join(self._rows))
        self._rows.clear()
        self._batch = 0
        if self._sheet_bytes + len(data) > _SHEET_BYTES:
            self._next_sheet()
        self._sheet.write(data)
        self._sheet_bytes += len(data)

    def start(self) -> bytes:
        return self._sink.drain()

    def add(self, row: Row) -> bytes | None:
        if self._sheet_rows == _SHEET_ROWS:
            if self._rows:
                self._write_rows()
            self._next_sheet()
        cells = self._cells(row)
        self._rows.append("<row>")
        self._rows.extend(cells)
        self._rows.append("</row>")
        self._sheet_rows += 1
        self._batch += sum(map(len, cells))
        if self._batch < CHUNK_SIZE:
            return None
        self._write_rows()
        return self._sink.drain() if len(self._sink) >= CHUNK_SIZE else None

    def finish(self) -> bytes:
        if self._rows:
            self._write_rows()
        self._sheet.write(b"</sheetData></worksheet>")
        self._sheet.close()
        sheets = range(1, self._sheets + 1)
        self._part(
            "xl/workbook.xml",
            f'{_XML_DECLARATION}<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}"><sheets>'
            + "".join(
                f'<sheet name="{_SHEET_NAME if n == 1 else f"{_SHEET_NAME} {n}"}"'
                f' sheetId="{n}" r:id="rId{n}"/>'
                for n in sheets
            )
            + "</sheets></workbook>",
        )
        self._part(
            "xl/_rels/workbook.xml.rels",
            f'{_XML_DECLARATION}<Relationships xmlns="{_PACKAGE_REL_NS}">'
            + "".join(
                f'<Relationship Id="rId{n}" Type="{_REL_NS}/worksheet"'
                f' Target="worksheets/sheet{n}.xml"/>'
                for n in sheets
            )
            + f'<Relationship Id="rId{self._sheets + 1}" Type="{_REL_NS}/styles"'
            ' Target="styles.xml"/></Relationships>',
        )
        self._part(
            "[Content_Types].xml",
            f'{_XML_DECLARATION}<Types xmlns="{_CONTENT_TYPES_NS}">'
            '<Default Extension="rels"'
            ' ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{_SPREADSHEETML}.sheet.main+xml"/>'
            f'<Override PartName="/xl/styles.xml" ContentType="{_SPREADSHEETML}.styles+xml"/>'
            + "".join(
                f'<Override PartName="/xl/worksheets/sheet{n}.xml"'
                f' ContentType="{_SPREADSHEETML}.worksheet+xml"/>'
                for n in sheets
            )
            + "</Types>",
        )
        self._zip.close()
        return self._sink.drain()


def xlsx_chunks(columns: Sequence[Column], rows: Rows) -> AsyncIterator[bytes]:
    """An Excel workbook, streamed (see the module's docstring)."""
    return _stream(_XlsxEncoder(_checked(columns)), rows)
