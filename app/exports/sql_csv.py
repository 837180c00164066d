"""Household and visit CSV written by PostgreSQL's COPY, the same bytes formats.py writes.

A million-row CSV written in Python spends most of its time on things that are not the
file: a row object per row in the driver and in SQLAlchemy, shaping it, and the csv
module (about 35 µs a row). Here the export's own query (its filters, scope and
snapshot) is wrapped in `COPY (SELECT ...) TO STDOUT (FORMAT csv)`: PostgreSQL turns
each value into the text formats.py would write for it, and quotes the fields itself.
Python is left with what the database cannot do: ending lines with CRLF (COPY writes
LF) and, in protected exports, the pseudonyms, keyed hashes under a key the database
never sees.

Every cell is what formats.py's CSV writer writes for the value service.py's plans
give it:
- text is guarded against formula injection (a leading `= + - @`, tab or CR gets a
  `'`); COPY quotes a field holding a comma, a quote, CR or LF as the csv module does,
  and an empty text is sent as NULL, since COPY would quote it;
- lists are their items joined by spaces, then guarded as text;
- booleans are `true`/`false`, dates ISO 8601, times UTC with `Z` and microseconds only
  when there are some, floats as Python's `repr` (`50.0`, `-0.0`), ISO weeks `2024-W05`;
- NULL is an empty cell.

tests/exports/test_sql_csv.py compares the two paths byte for byte on values chosen to
trip each rule.

The statement is rendered with its values inline (COPY takes no parameters). They are
the export's filters, already checked against their patterns (P-codes, decision codes,
dates), the scope's P-codes from the database and fixed code lists; SQLAlchemy renders
each as a quoted literal.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Select, Text, and_, case, cast, func, literal, null, select, true
from sqlalchemy.dialects.postgresql import aggregate_order_by, array
from sqlalchemy.sql.elements import ColumnElement

from app.exports.formats import FORMULA_STARTS, Column, guarded

#: What `FORMULA_STARTS` matches at the start of a text, as a regular expression.
_FORMULA_START_PATTERN = "^([-=+@\t\r])"

Cell = ColumnElement[Any]


def constant(value: str) -> Cell:
    """A fixed text cell, guarded in Python by the same rule as `text`."""
    cell = guarded(value)
    return literal(cell, Text) if cell else null()


#: The code points of `FORMULA_STARTS` (`ascii()` gives a text's first one).
_FORMULA_CODES = [ord(start) for start in FORMULA_STARTS]


def text(value: Any) -> Cell:
    """A text cell: the formula guard; empty text as NULL (COPY quotes the rest)."""
    guarded = case(
        (func.ascii(value).in_(_FORMULA_CODES), literal("'", Text) + value),
        else_=value,
    )
    return func.nullif(guarded, "")


def _guarded_once(value: Any) -> Cell:
    """`text` for an expression worth evaluating only once (no CASE repeating it)."""
    return func.nullif(func.regexp_replace(value, _FORMULA_START_PATTERN, "'\\1"), "")


def uuid_text(value: Any) -> Cell:
    """An id as `str(uuid)` gives it (hex: never guarded, never quoted)."""
    return cast(value, Text)


def integer(value: Any) -> Cell:
    return cast(value, Text)


def floating(value: Any) -> Cell:
    """Python's repr of a float: PostgreSQL's shortest form, with `.0` for a whole number
    (`50` is `50.0`, `-0` is `-0.0`); NaN and infinities empty, as the csv module path
    writes them. Whole numbers from 1e15 on, which PostgreSQL writes with an exponent
    and Python from 1e16, differ; no exported float gets near (latitudes and
    longitudes are checked on the way in)."""
    as_text = cast(value, Text)
    special = [literal(name).cast(value.type) for name in ("NaN", "Infinity", "-Infinity")]
    return case(
        (value.in_(special), null()),
        (and_(value == func.trunc(value), func.abs(value) < _WHOLE_UP_TO), as_text + ".0"),
        else_=as_text,
    )


_WHOLE_UP_TO = 1e15


def boolean(value: Any) -> Cell:
    return case((value.is_(True), "true"), (value.is_(False), "false"))


def day(value: Any) -> Cell:
    return func.to_char(value, "YYYY-MM-DD")


def utc_time(value: Any) -> Cell:
    """`2024-05-01T10:00:00Z`, or `...T10:00:00.250000Z` with microseconds."""
    stamp = func.to_char(func.timezone("UTC", value), 'YYYY-MM-DD"T"HH24:MI:SS.US')
    return func.replace(stamp, ".000000", "") + "Z"


def iso_week(value: Any, *, utc: bool) -> Cell:
    """`2024-W05` as service.iso_week writes it (the year not padded to four digits)."""
    moment = func.timezone("UTC", value) if utc else value
    return func.ltrim(func.to_char(moment, 'IYYY-"W"IW'), "0")


def word_list(value: Any, *, leaving_out: Sequence[str] = ()) -> Cell:
    """A JSON array's items joined by spaces (a JSON null item as empty text), in
    order, without the items in `leaving_out`; then guarded as text."""
    if leaving_out:
        value = value.op("-")(array([literal(code, Text) for code in leaving_out]))
    as_text = cast(value, Text)
    items = (
        func.jsonb_array_elements_text(value)
        .table_valued("value", with_ordinality="n")
        .render_derived()
    )
    item = func.coalesce(items.c.value, "")
    joined = (
        select(func.string_agg(item, aggregate_order_by(literal(" ", Text), items.c.n)))
        .select_from(items)
        .scalar_subquery()
    )
    fast = func.replace(func.substr(as_text, 3, func.length(as_text) - 4), '", "', " ")
    length = func.jsonb_array_length(value)
    quotes = func.octet_length(as_text) - func.octet_length(func.replace(as_text, '"', ""))
    joined_text = case(
        (length == 0, ""),
        # Strings only, none with an escape: two quotes an item and no backslash.
        (and_(func.strpos(as_text, "\\") == 0, quotes == 2 * length), fast),
        else_=func.coalesce(joined, ""),
    )
    return _guarded_once(joined_text)


def top_coded(value: Any, top: int) -> Cell:
    """service.top_coded's text, guarded: `8+`, or the number (`'-1` if negative)."""
    as_text = cast(value, Text)
    return case(
        (value >= top, f"{top}+"),
        (value < 0, literal("'", Text) + as_text),
        else_=as_text,
    )


def lines_query(
    query: Select[Any],
    columns: Sequence[Column],
    cells: Callable[[Mapping[str, Any]], Mapping[str, Cell]],
    *,
    pseudonymised: Mapping[str, str] | None = None,
    order_by: Sequence[str],
    memoized: Sequence[Sequence[str]] = (),
) -> Select[Any]:
    """The rows of `query`, one cell a column, for COPY.

    `cells` gives each column's cell from the query's columns. The columns named in
    `pseudonymised` (column name to the query's id column) must come first: COPY writes
    the id as 32 hex digits there, for Python to replace by its pseudonym. Rows come in
    the order of `order_by` (query columns).

    Each group of `memoized` cells is written once for each distinct set of the values
    it is made of, rather than once a row: cells of a settlement's names, or of a list
    of codes, take a few hundred distinct values in a million rows. The group becomes a
    LATERAL subquery, which PostgreSQL caches by its inputs (Memoize) and which keeps
    the rows' order; OFFSET 0 keeps it from being folded back into the main query.
    """
    pseudonymised = pseudonymised or {}
    rows = query.subquery("export_rows")
    given: dict[str, Any] = dict(cells(dict(rows.c.items())))
    names = [c.name for c in columns]
    if list(pseudonymised) != names[: len(pseudonymised)]:
        raise ValueError("pseudonymised columns must come first")
    missing = [name for name in names[len(pseudonymised) :] if name not in given]
    if missing:
        raise ValueError(f"no SQL cell for column(s) {', '.join(missing)}")
    source: Any = rows
    for number, group in enumerate(memoized):
        once = select(*(given[name].label(name) for name in group)).correlate(rows).offset(0)
        cached = once.lateral(f"memo_{number}")
        source = source.join(cached, true())
        given |= {name: cached.c[name] for name in group}
    ids = [func.encode(func.uuid_send(rows.c[name]), "hex") for name in pseudonymised.values()]
    rest = [given[name].label(name) for name in names[len(pseudonymised) :]]
    return select(*ids, *rest).select_from(source).order_by(*(rows.c[name] for name in order_by))


#: Every byte but the quote and LF: deleting them leaves a text's "skeleton".
_NOT_QUOTE_OR_LF = bytes(b for b in range(256) if b not in b'"\n')


def _no_line_break_in_a_field(data: bytes) -> bool:
    """Whether every LF in `data` (which starts at a row's start) ends a row.

    It does unless some piece between LFs holds an odd number of quotes (a quoted field
    holds an even number: its own two and doubled ones). In the skeleton of `data`, the
    quotes of each piece stand together; taking them away in pairs leaves a quote only
    where a piece had an odd number. Three passes in C, none a row.
    """
    skeleton = data.translate(None, _NOT_QUOTE_OR_LF)
    return b'"' not in skeleton.replace(b'""', b"")


async def csv_rows(
    chunks: AsyncGenerator[bytes, None],
) -> AsyncGenerator[list[bytes], None]:
    """COPY's output as lists of whole rows, without their line ends.

    COPY ends a row with LF, and an LF inside a quoted field is data. Where a chunk has
    none of those (the usual case) it is split at every LF. Otherwise a piece between
    two LFs whose quotes are unbalanced ends inside a quoted field, so it is joined to
    the next. `chunks` is closed with these rows, however they end.
    """
    partial = b""  # after the last LF so far: the start of a row
    carry: list[bytes] = []  # pieces of a row whose quoted field is still open
    open_quote = False
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            data = partial + chunk if partial else chunk
            pieces = data.split(b"\n")
            partial = pieces.pop()
            if not carry and _no_line_break_in_a_field(data):
                rows = pieces
            else:
                rows = []
                for piece in pieces:
                    carry.append(piece)
                    open_quote ^= bool(piece.count(b'"') & 1)
                    if not open_quote:
                        rows.append(b"\n".join(carry))
                        carry = []
            if rows:
                yield rows
    if partial or carry:
        raise RuntimeError("COPY's output ended inside a row")  # COPY ends rows with LF
