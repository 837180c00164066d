"""Exports for humanitarian partners and supervisors: which rows, which columns, and what
data protection does to them. The file formats are in formats.py.

Partner data protection (`protected`), the default for partners and not theirs to turn
off:
- no names, phone numbers, addresses, exact locations or free text;
- no sensitive reasons at household level;
- household (and visit) ids replaced by a pseudonym: HMAC-SHA256 under a key derived
  from the server's key and the requesting account, so it is stable across that
  account's exports, different for every account, and irreversible without the key;
- dates coarsened to the ISO week, household sizes top-coded;
- locations coarsened to the settlement's centroid, and only where enough households
  are located for the centroid not to point at one of them;
- only households whose latest contacted visit consented to sharing;
- in the settlement summary, counts from 1 to k-1 suppressed, and enough others with
  them that no suppressed cell follows from the row's total.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import uuid
from binascii import unhexlify
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Select, case, null
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit import service as audit
from app.auth.models import Role
from app.auth.service import Principal
from app.core.config import Settings
from app.core.db import is_postgresql
from app.core.errors import FieldError, Forbidden, Invalid
from app.exports import formats, repository, sql_csv
from app.exports.formats import Column
from app.exports.repository import Filters
from app.settlements import service as settlements
from app.visits import codes

KINDS = ("households", "visits", "settlements")

#: Admin-1 and admin-2 names for the P-codes of the bundled settlements (KATOTTG).
ADMIN_NAMES = {"UA63": "Харківська", "UA6308": "Куп'янський"}

#: Top-coding: the largest count shown as itself; larger ones show as "N+".
TOP_MEMBERS = 8
TOP_VULNERABLE = 3


def pseudonym_key(secret: str, account: uuid.UUID) -> bytes:
    """The key of one account's pseudonyms."""
    return hmac.new(secret.encode(), b"fieldsync-pseudonym\x00" + account.bytes, "sha256").digest()


def pseudonym(key: bytes, internal_id: uuid.UUID) -> str:
    """A stable, irreversible stand-in for an id: `p` and the first 25 characters (125
    bits) of the base32 of its HMAC-SHA256."""
    digest = hmac.digest(key, internal_id.bytes, hashlib.sha256)
    return "p" + base64.b32encode(digest).decode().lower()[:25]


_BASE32 = b"abcdefghijklmnopqrstuvwxyz234567"
_BASE32_DIGITS = [_BASE32[n : n + 1] for n in range(32)]


def pseudonyms_of_hex(key: bytes, hex_ids: Sequence[bytes]) -> list[bytes]:
    """`pseudonym` of each id given as 32 hex digits (as COPY writes a uuid), in ASCII.

    The same characters, with the base32 encoding (a Python loop per 5 bytes) done
    once for all the ids rather than once each: 5 bytes make 8 characters on their
    own, so a digest's first 15 bytes give the first 24 characters wherever they stand
    in the input, and the 25th is the top 5 bits of byte 15.
    """
    digests = [hmac.digest(key, unhexlify(hex_id), "sha256") for hex_id in hex_ids]
    heads = base64.b32encode(b"".join([digest[:15] for digest in digests])).lower()
    return [
        b"p" + heads[24 * n : 24 * n + 24] + _BASE32_DIGITS[digest[15] >> 3]
        for n, digest in enumerate(digests)
    ]


def iso_week(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    year, week, _ = value.isocalendar()
    return f"{year}-W{week:02d}"


def top_coded(value: int | None, top: int) -> str | None:
    if value is None:
        return None
    return f"{top}+" if value >= top else str(value)


def _admin_columns() -> list[Column]:
    return [
        Column("adm1_code", "#adm1 +code"),
        Column("adm1_name", "#adm1 +name"),
        Column("adm2_code", "#adm2 +code"),
        Column("adm2_name", "#adm2 +name"),
        Column("adm3_code", "#adm3 +code"),
        Column("adm3_name", "#adm3 +name"),
        Column("adm4_code", "#adm4 +code"),
        Column("adm4_name", "#adm4 +name"),
    ]


def _admin_values(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "adm1_code": row["oblast_pcode"],
        "adm1_name": ADMIN_NAMES.get(row["oblast_pcode"], ""),
        "adm2_code": row["raion_pcode"],
        "adm2_name": ADMIN_NAMES.get(row["raion_pcode"], ""),
        "adm3_code": row["hromada_pcode"],
        "adm3_name": row["hromada_name"],
        "adm4_code": row["settlement_pcode"],
        "adm4_name": row["settlement_name"],
    }


@dataclass
class Export:
    """An export ready to stream: its name, type, row count and bytes."""

    filename: str
    media_type: str
    rows: int
    chunks: AsyncIterator[bytes]


@dataclass
class _Plan:
    columns: list[Column]
    shape: Callable[[dict[str, Any]], dict[str, Any]]


def _household_plan(
    settings: Settings, protected: bool, key: bytes, centroids: Mapping[str, Any]
) -> _Plan:
    org = settings.export_org
    columns = [
        Column("household", "#meta +id"),
        Column("org", "#org +name"),
        *_admin_columns(),
        Column("last_visit", "#date +reported", "text" if protected else "datetime"),
        Column("last_outcome", "#indicator +last_outcome"),
        Column("decision", "#indicator +evac_decision"),
        Column("reasons", "#indicator +reasons", "list"),
        Column("needs", "#need", "list"),
        Column("planned_departure", "#date +departure +planned", "text" if protected else "date"),
        Column("members", "#population +total", "text" if protected else "int"),
        Column("members_elderly", "#population +elderly", "text" if protected else "int"),
        Column("members_children", "#population +children", "text" if protected else "int"),
        Column("members_disabled", "#population +disabled", "text" if protected else "int"),
    ]
    if not protected:
        columns += [
            Column("consent_to_share", "#indicator +consent", "bool"),
            Column("address", "#loc +address"),
            Column("head_name", "#respondee +name"),
            Column("phone", "#contact +phone"),
            Column("notes", "#description +notes"),
            Column("lat", "#geo +lat", "float"),
            Column("lon", "#geo +lon", "float"),
        ]

    def shape(row: dict[str, Any]) -> dict[str, Any]:
        reasons = list(row["reasons"] or [])
        out = {
            "household": pseudonym(key, row["id"]) if protected else str(row["id"]),
            "org": org,
            **_admin_values(row),
            "last_outcome": row["last_outcome"],
            "decision": row["decision"],
            "needs": list(row["needs"] or []),
        }
        if protected:
            centroid = centroids.get(row["settlement_pcode"])
            out |= {
                "last_visit": iso_week(row["last_visit_at"]),
                "reasons": [r for r in reasons if r not in codes.SENSITIVE_REASONS],
                "planned_departure": iso_week(row["planned_departure"]),
                "members": top_coded(row["members"], TOP_MEMBERS),
                "members_elderly": top_coded(row["members_elderly"], TOP_VULNERABLE),
                "members_children": top_coded(row["members_children"], TOP_VULNERABLE),
                "members_disabled": top_coded(row["members_disabled"], TOP_VULNERABLE),
                "_lat": centroid[0] if centroid else None,
                "_lon": centroid[1] if centroid else None,
            }
        else:
            out |= {
                "last_visit": row["last_visit_at"],
                "reasons": reasons,
                "planned_departure": row["planned_departure"],
                **{n: row[n] for n in ("members", "members_elderly", "members_children")},
                "members_disabled": row["members_disabled"],
                "consent_to_share": row["consent_to_share"],
                **{n: row[n] for n in ("address", "head_name", "phone", "notes")},
                "lat": row["lat"],
                "lon": row["lon"],
                "_lat": row["lat"],
                "_lon": row["lon"],
            }
        return out

    return _Plan(columns, shape)


def _visit_plan(settings: Settings, protected: bool, key: bytes) -> _Plan:
    columns = [
        Column("visit", "#meta +id"),
        Column("household", "#meta +household"),
        Column("org", "#org +name"),
        *_admin_columns(),
        Column("visited", "#date +occurred", "text" if protected else "datetime"),
        Column("received", "#date +reported", "text" if protected else "datetime"),
        Column("outcome", "#indicator +outcome"),
        Column("decision", "#indicator +evac_decision"),
        Column("reasons", "#indicator +reasons", "list"),
        Column("leave_mode", "#indicator +leave_mode"),
        Column("signed_refusal", "#indicator +signed_refusal", "bool"),
        Column("people_present", "#population +present", "text" if protected else "int"),
        Column("needs", "#need", "list"),
        Column("planned_departure", "#date +departure +planned", "text" if protected else "date"),
        Column("consent_to_share", "#indicator +consent", "bool"),
        Column("review_state", "#indicator +review"),
        Column("counts", "#indicator +in_fold", "bool"),
    ]
    if not protected:
        columns += [
            Column("recorded_by", "#contact +enumerator"),
            Column("reason_note", "#description +reason"),
            Column("destination", "#loc +destination"),
            Column("notes", "#description +notes"),
            Column("lat", "#geo +lat", "float"),
            Column("lon", "#geo +lon", "float"),
        ]
    org = settings.export_org

    def shape(row: dict[str, Any]) -> dict[str, Any]:
        reasons = list(row["reasons"] or [])
        out = {
            "org": org,
            **_admin_values(row),
            **{n: row[n] for n in ("outcome", "decision", "leave_mode", "signed_refusal")},
            "needs": list(row["needs"] or []),
            "consent_to_share": row["consent_to_share"],
            "review_state": row["review_state"],
            "counts": bool(row["in_fold"]),
        }
        if protected:
            return out | {
                "visit": pseudonym(key, row["id"]),
                "household": pseudonym(key, row["household_id"]),
                "visited": iso_week(row["visited_at"]),
                "received": iso_week(row["received_at"]),
                "reasons": [r for r in reasons if r not in codes.SENSITIVE_REASONS],
                "people_present": top_coded(row["people_present"], TOP_MEMBERS),
                "planned_departure": iso_week(row["planned_departure"]),
                "_lat": None,
                "_lon": None,
            }
        return out | {
            "visit": str(row["id"]),
            "household": str(row["household_id"]),
            "visited": row["visited_at"],
            "received": row["received_at"],
            "reasons": reasons,
            "people_present": row["people_present"],
            "planned_departure": row["planned_departure"],
            **{n: row[n] for n in ("recorded_by", "reason_note", "destination", "notes")},
            "lat": row["lat"],
            "lon": row["lon"],
            "_lat": row["lat"],
            "_lon": row["lon"],
        }

    return _Plan(columns, shape)


# The same rows as CSV lines written by PostgreSQL (sql_csv.py) --------------------------


def _admin_cells(c: Mapping[str, Any]) -> dict[str, sql_csv.Cell]:
    def name_of(code: Any) -> sql_csv.Cell:
        known = {pcode: sql_csv.constant(name) for pcode, name in ADMIN_NAMES.items()}
        return case(known, value=code, else_=null())

    return {
        "adm1_code": sql_csv.text(c["oblast_pcode"]),
        "adm1_name": name_of(c["oblast_pcode"]),
        "adm2_code": sql_csv.text(c["raion_pcode"]),
        "adm2_name": name_of(c["raion_pcode"]),
        "adm3_code": sql_csv.text(c["hromada_pcode"]),
        "adm3_name": sql_csv.text(c["hromada_name"]),
        "adm4_code": sql_csv.text(c["settlement_pcode"]),
        "adm4_name": sql_csv.text(c["settlement_name"]),
    }


_NOT_SENSITIVE = {"leaving_out": sorted(codes.SENSITIVE_REASONS)}


def _household_sql_cells(
    settings: Settings, protected: bool
) -> Callable[[Mapping[str, Any]], dict[str, sql_csv.Cell]]:
    """`_household_plan`'s cells, as SQL over the households query's columns."""
    org = sql_csv.constant(settings.export_org)
    t, week = sql_csv.text, sql_csv.iso_week

    def cells(c: Mapping[str, Any]) -> dict[str, sql_csv.Cell]:
        out = {
            "org": org,
            **_admin_cells(c),
            "last_outcome": t(c["last_outcome"]),
            "decision": t(c["decision"]),
            "needs": sql_csv.word_list(c["needs"]),
        }
        if protected:
            return out | {
                "last_visit": week(c["last_visit_at"], utc=True),
                "reasons": sql_csv.word_list(c["reasons"], **_NOT_SENSITIVE),
                "planned_departure": week(c["planned_departure"], utc=False),
                "members": sql_csv.top_coded(c["members"], TOP_MEMBERS),
                **{
                    name: sql_csv.top_coded(c[name], TOP_VULNERABLE)
                    for name in ("members_elderly", "members_children", "members_disabled")
                },
            }
        return out | {
            "household": sql_csv.uuid_text(c["id"]),
            "last_visit": sql_csv.utc_time(c["last_visit_at"]),
            "reasons": sql_csv.word_list(c["reasons"]),
            "planned_departure": sql_csv.day(c["planned_departure"]),
            **{
                name: sql_csv.integer(c[name])
                for name in ("members", "members_elderly", "members_children", "members_disabled")
            },
            "consent_to_share": sql_csv.boolean(c["consent_to_share"]),
            **{name: t(c[name]) for name in ("address", "head_name", "phone", "notes")},
            "lat": sql_csv.floating(c["lat"]),
            "lon": sql_csv.floating(c["lon"]),
        }

    return cells


def _visit_sql_cells(
    settings: Settings, protected: bool
) -> Callable[[Mapping[str, Any]], dict[str, sql_csv.Cell]]:
    """`_visit_plan`'s cells, as SQL over the visits query's columns."""
    org = sql_csv.constant(settings.export_org)
    t, week = sql_csv.text, sql_csv.iso_week

    def cells(c: Mapping[str, Any]) -> dict[str, sql_csv.Cell]:
        out = {
            "org": org,
            **_admin_cells(c),
            **{name: t(c[name]) for name in ("outcome", "decision", "leave_mode")},
            "signed_refusal": sql_csv.boolean(c["signed_refusal"]),
            "needs": sql_csv.word_list(c["needs"]),
            "consent_to_share": sql_csv.boolean(c["consent_to_share"]),
            "review_state": t(c["review_state"]),
            "counts": case((c["in_fold"].is_(True), "true"), else_="false"),
        }
        if protected:
            return out | {
                "visited": week(c["visited_at"], utc=True),
                "received": week(c["received_at"], utc=True),
                "reasons": sql_csv.word_list(c["reasons"], **_NOT_SENSITIVE),
                "people_present": sql_csv.top_coded(c["people_present"], TOP_MEMBERS),
                "planned_departure": week(c["planned_departure"], utc=False),
            }
        return out | {
            "visit": sql_csv.uuid_text(c["id"]),
            "household": sql_csv.uuid_text(c["household_id"]),
            "visited": sql_csv.utc_time(c["visited_at"]),
            "received": sql_csv.utc_time(c["received_at"]),
            "reasons": sql_csv.word_list(c["reasons"]),
            "people_present": sql_csv.integer(c["people_present"]),
            "planned_departure": sql_csv.day(c["planned_departure"]),
            **{name: t(c[name]) for name in ("recorded_by", "reason_note", "destination", "notes")},
            "lat": sql_csv.floating(c["lat"]),
            "lon": sql_csv.floating(c["lon"]),
        }

    return cells


def csv_lines_query(
    settings: Settings, kind: str, query: Select[Any], protected: bool
) -> tuple[Select[Any], int]:
    """The export's CSV lines as a query (PostgreSQL), and how many pseudonyms lead each
    row of it (the rest of the row is the line after them)."""
    columns = _columns(settings, kind, protected)
    if kind == "households":
        cells = _household_sql_cells(settings, protected)
        ids = {"household": "id"}
        order = ["id"]
    else:
        cells = _visit_sql_cells(settings, protected)
        ids = {"visit": "id", "household": "household_id"}
        order = ["household_id", "visited_at", "id"]
    pseudonymised = ids if protected else {}
    lines = sql_csv.lines_query(
        query,
        columns,
        cells,
        pseudonymised=pseudonymised,
        order_by=order,
        memoized=[["reasons"], ["needs"]],  # a few hundred distinct lists in a million
    )
    return lines, len(pseudonymised)


# The settlement summary ----------------------------------------------------------------

DECISION_CELLS = ("leave", "stay", "undecided", "no_decision")
PEOPLE_CELLS = ("people", "elderly", "children", "disabled")
REASONS = tuple(dict.fromkeys(c.code for c in (*codes.REASONS_STAY, *codes.REASONS_LEAVE)))
NEED_CODES = tuple(c.code for c in codes.NEEDS)


def summary_columns() -> list[Column]:
    return [
        Column("org", "#org +name"),
        *_admin_columns(),
        Column("households", "#indicator +households +total", "int"),
        Column("visited", "#indicator +households +visited", "int"),
        *(Column(f"decision_{d}", f"#indicator +households +{d}", "int") for d in DECISION_CELLS),
        Column("people", "#population +total", "int"),
        Column("elderly", "#population +elderly", "int"),
        Column("children", "#population +children", "int"),
        Column("disabled", "#population +disabled", "int"),
        *(Column(f"reason_{r}", f"#indicator +households +reason_{r}", "int") for r in REASONS),
        *(Column(f"need_{n}", f"#need +households +{n}", "int") for n in NEED_CODES),
    ]


#: Cells of a row that add up to another cell of it: hiding one of them alone would not
#: hide it, since the total minus the visible ones gives it back.
PARTITIONS = (("households", tuple(f"decision_{d}" for d in DECISION_CELLS)),)


def suppress(cells: dict[str, int | None], k: int) -> dict[str, int | None]:
    """Small counts (1 to k-1) hidden as None, with secondary suppression.

    A row whose household count is itself small is hidden whole: every count in it
    describes a handful of families. Within a partition (cells adding up to a visible
    total), the hidden cells' sum is the total minus the visible ones; more cells are
    hidden, smallest first, until that sum is at least 2k, so that it pins down none of
    them (two hidden ones summing to 2 would both be 1).
    """
    if 0 < (cells.get("households") or 0) < k:
        return dict.fromkeys(cells)
    out: dict[str, int | None] = {
        name: None if value is not None and 0 < value < k else value
        for name, value in cells.items()
    }
    for total, parts in PARTITIONS:
        if out.get(total) is None or all(out[p] is not None for p in parts):
            continue
        while True:
            hidden_sum = sum(cells[p] or 0 for p in parts if out[p] is None)
            shown = [p for p in parts if out[p] is not None]
            if hidden_sum >= 2 * k or not shown:
                break
            out[min(shown, key=lambda p: (out[p] == 0, out[p] or 0, p))] = None
    return out


def summary_cells(count: Counter[str] | None) -> dict[str, int | None]:
    names = [c.name for c in summary_columns() if c.kind == "int"]
    return {name: (count or Counter())[name] for name in names}


# Opening an export ----------------------------------------------------------------------


async def _scope(session: AsyncSession, principal: Principal) -> frozenset[str] | None:
    """Partners, like supervisors, export their assigned settlements, or all of them."""
    role = Role.supervisor if principal.role is Role.partner else principal.role
    return await settlements.visible_pcodes(session, principal.user_id, role)


def _check_protected_filters(kind: str, filters: Filters) -> None:
    """Filters that could single out a household are refused on protected exports.

    Two exports that differ by one filter step differ by the households in that step: a
    point in time (`as_of`) or a day would let a partner isolate one household's answers
    (in a summary, one family behind a suppressed count; in a household file, the exact
    day behind an ISO week). Household files take whole ISO weeks; summaries take no
    time filter at all.
    """
    errors = []
    if filters.as_of is not None:
        errors.append(FieldError(field="as_of", code="not_protected", message=_NO_TIME))
    for name, day, weekday in (
        ("date_from", filters.date_from, 1),
        ("date_to", filters.date_to, 7),
    ):
        if day is None:
            continue
        if kind == "settlements":
            errors.append(FieldError(field=name, code="not_protected", message=_NO_TIME))
        elif day.isoweekday() != weekday:
            first = "a Monday" if weekday == 1 else "a Sunday"
            message = f"must be {first}: protected exports take whole ISO weeks"
            errors.append(FieldError(field=name, code="whole_weeks", message=message))
    if errors:
        raise Invalid("This filter is not allowed on a protected export.", errors=errors)


_NO_TIME = "is not allowed on a protected export of this kind (it could single out a household)"


def _protection(principal: Principal, kind: str, protect: bool | None) -> bool:
    if principal.role is Role.partner:
        if kind == "visits":
            raise Forbidden("Visit-level exports are for supervisors and administrators.")
        if protect is False:
            raise Forbidden("Partner exports are always protected; leave `protected` out.")
        return True
    if principal.role not in (Role.supervisor, Role.admin):
        raise Forbidden("Exports are for supervisors, administrators and partners.")
    return bool(protect)


async def open_export(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    principal: Principal,
    kind: str,
    file_format: str,
    filters: Filters,
    *,
    protect: bool | None = None,
    progress: Callable[[int], None] | None = None,
) -> Export:
    """Check who may export what, count the rows, record the export in the audit log
    (committed before the first byte leaves), and return the bytes to stream."""
    protected = _protection(principal, kind, protect)
    if protected:
        _check_protected_filters(kind, filters)
    session = sessionmaker()
    try:
        await repository.begin_snapshot(session)
        scope = await _scope(session, principal)
        if filters.settlement is not None:
            settlements.require_visible(scope, [filters.settlement])
        key = pseudonym_key(settings.secret_key.get_secret_value(), principal.user_id)
        if kind == "settlements":
            query = repository.settlements_query(session, scope, filters)
        elif kind == "visits":
            query = repository.visits_query(session, scope, filters, consenting_only=protected)
        else:
            query = repository.households_query(session, scope, filters, consenting_only=protected)
        total = await repository.count(session, query)
        await _record(sessionmaker, principal, kind, file_format, filters, protected, total)
        columns = _columns(settings, kind, protected)
        if file_format == "csv" and kind != "settlements" and is_postgresql(session):
            lines, leading = csv_lines_query(settings, kind, query, protected)
            copied = sql_csv.csv_rows(repository.copy_csv(session, lines))
            chunks = _database_csv(columns, copied, leading, key, progress)
        else:
            rows = _rows(session, settings, kind, query, filters, scope, protected, key)
            if progress is not None:
                rows = _counted(rows, progress)
            chunks = _file_chunks(columns, rows, file_format)
    except BaseException:
        await session.close()
        raise
    chunks = _closing(chunks, session)
    today = datetime.now(UTC).date().isoformat()
    suffix = "-protected" if protected else ""
    return Export(
        filename=f"fieldsync-{kind}{suffix}-{today}.{formats.EXTENSIONS[file_format]}",
        media_type=formats.MEDIA_TYPES[file_format],
        rows=total,
        chunks=chunks,
    )


async def _record(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    kind: str,
    file_format: str,
    filters: Filters,
    protected: bool,
    total: int,
) -> None:
    async with sessionmaker() as session:
        await audit.record(
            session,
            action="export",
            entity_type="export",
            entity_id=kind,
            actor_id=principal.user_id,
            actor_username=principal.username,
            after={
                "kind": kind,
                "format": file_format,
                "filters": {
                    name: value.isoformat() if isinstance(value, date | datetime) else value
                    for name, value in vars(filters).items()
                    if value is not None
                },
                "rows": total,
                "protected": protected,
                "pii": not protected,
            },
        )
        await session.commit()


def _columns(settings: Settings, kind: str, protected: bool) -> list[Column]:
    if kind == "settlements":
        return summary_columns()
    if kind == "visits":
        return _visit_plan(settings, protected, b"").columns
    return _household_plan(settings, protected, b"", {}).columns


async def _rows(
    session: AsyncSession,
    settings: Settings,
    kind: str,
    query: Select[Any],
    filters: Filters,
    scope: frozenset[str] | None,
    protected: bool,
    key: bytes,
) -> AsyncIterator[dict[str, Any]]:
    """The rows of `query` (the one counted), shaped for the file."""
    k = settings.export_min_count
    if kind == "households":
        centroids = await repository.centroids(session, scope, k) if protected else {}
        plan = _household_plan(settings, protected, key, centroids)
        async for row in repository.stream(session, query):
            yield plan.shape(row)
    elif kind == "visits":
        plan = _visit_plan(settings, protected, key)
        async for row in repository.stream(session, query):
            yield plan.shape(row)
    else:
        households = repository.households_query(session, scope, filters, consenting_only=False)
        counts = await repository.settlement_counts(session, households, DECISION_CELLS[:-1])
        centroids = await repository.centroids(session, scope, k)
        async for row in repository.stream(session, query):
            cells = summary_cells(counts.get(row["settlement_pcode"]))
            centroid = centroids.get(row["settlement_pcode"])
            yield {
                "org": settings.export_org,
                **_admin_values(row),
                **(suppress(cells, k) if protected else cells),
                "_lat": centroid[0] if centroid else None,
                "_lon": centroid[1] if centroid else None,
            }


async def _counted(
    rows: AsyncIterator[dict[str, Any]], progress: Callable[[int], None]
) -> AsyncIterator[dict[str, Any]]:
    """The rows, telling `progress` how many went by, a thousand at a time."""
    done = 0
    async for row in rows:
        yield row
        done += 1
        if done % 1000 == 0:
            progress(1000)
    progress(done % 1000)


async def _database_csv(
    columns: Sequence[Column],
    batches: AsyncGenerator[list[bytes], None],
    leading: int,
    key: bytes,
    progress: Callable[[int], None] | None,
) -> AsyncIterator[bytes]:
    """The CSV from the rows COPY wrote (`csv_lines_query`): the head, then the rows with
    CRLF line ends, the `leading` hex ids of each turned into pseudonyms."""
    yield formats.csv_head(columns)
    # Closed with the stream, however it ends: the copy under it is cancelled before the
    # session closes (a client gone mid-download leaves no copy running on a connection).
    async with contextlib.aclosing(batches):
        async for rows in batches:
            yield _pseudonymised(rows, leading, key)
            if progress is not None:
                progress(len(rows))


#: A leading id in a COPY row: 32 hex digits and a comma.
_ID_WIDTH = 33


def _pseudonymised(rows: list[bytes], leading: int, key: bytes) -> bytes:
    """COPY's rows with CRLF line ends, the `leading` hex ids of each as pseudonyms."""
    width = _ID_WIDTH
    if leading == 1:
        names = pseudonyms_of_hex(key, [row[:32] for row in rows])
        rows = [name + row[32:] for name, row in zip(names, rows, strict=True)]
    elif leading:
        columns = [
            pseudonyms_of_hex(key, [row[i * width : i * width + 32] for row in rows])
            for i in range(leading)
        ]
        rows = [
            b",".join(names) + row[leading * width - 1 :]
            for *names, row in zip(*columns, rows, strict=True)
        ]
    return b"\r\n".join([*rows, b""])


def _file_chunks(
    columns: Sequence[Column], rows: AsyncIterator[dict[str, Any]], file_format: str
) -> AsyncIterator[bytes]:
    if file_format == "csv":
        return formats.csv_chunks(columns, rows)
    if file_format == "xlsx":
        return formats.xlsx_chunks(columns, rows)
    if file_format == "jsonl":
        return formats.jsonl_chunks(columns, rows)
    return formats.geojson_chunks(columns, rows, lon="_lon", lat="_lat")


async def _closing(
    chunks: AsyncIterator[bytes], session: AsyncSession
) -> AsyncGenerator[bytes, None]:
    """The chunks; the export's session (and its database cursor) ends with the stream,
    however it ends."""
    try:
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()
    finally:
        await session.close()
