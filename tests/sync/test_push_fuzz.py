"""Push fuzzing: hostile bodies for POST /api/v1/sync/push, on both databases.

Hypothesis builds each body as raw bytes, so it can be what no JSON library writes:
NaN and Infinity tokens, integers past 64 bits, 1e400 and -0, duplicate keys, lone
surrogates escaped in JSON and as raw bytes, NUL bytes, nesting thousands deep, arrays
of a hundred thousand elements; with text in Cyrillic, right-to-left scripts, combining
marks and emoji; sent as valid, invalid or truncated gzip, under wrong content types
and encodings.

Every body also carries a valid household and a valid visit. Whatever else it holds,
the answer is either a clear refusal (a 4xx problem document, nothing stored) or a 200
in which every bad item is rejected with errors naming its fields, and the valid visit
is stored. Hostile items alone, in a body that parses, never cost the batch: the answer
is then a 200. Never a 5xx.

FIELDSYNC_FUZZ_EXAMPLES raises the number of bodies (`make fuzz`).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.errors import PROBLEM_JSON
from app.sync.schemas import PushResponse
from app.visits.models import Visit
from tests.factories import read_fresh
from tests.sync.helpers import Phone, ensure_settlement, household, make_phone, visit

EXAMPLES = int(os.environ.get("FIELDSYNC_FUZZ_EXAMPLES", "0")) or 40
DERANDOMIZE = os.environ.get("FIELDSYNC_FUZZ_SEED", "fixed") != "random"
PUSH = "/api/v1/sync/push"
STORED = {"applied", "duplicate", "conflict", "pending"}

# --- JSON written by hand ---------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text written into the body as it is. `whole_body` marks text that no JSON
    parser need accept (it may cost the whole batch a 4xx)."""

    text: str
    whole_body: bool = False


@dataclass(frozen=True)
class Obj:
    """A JSON object as a list of pairs: a key may come twice."""

    pairs: tuple[tuple[str, Any], ...]

    @staticmethod
    def of(mapping: dict[str, Any]) -> Obj:
        return Obj(tuple(mapping.items()))

    def set(self, key: str, value: Any) -> Obj:
        if any(k == key for k, _ in self.pairs):
            return Obj(tuple((k, value if k == key else v) for k, v in self.pairs))
        return Obj((*self.pairs, (key, value)))

    def get(self, key: str) -> Any:
        return next(v for k, v in reversed(self.pairs) if k == key)


def render(value: Any, ascii_only: bool) -> str:
    """JSON text. Strings are written by Python's json: with `ascii_only`, everything
    past ASCII (lone surrogates too) as \\u escapes; else as it is (a lone surrogate
    then becomes bytes that are not UTF-8)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Obj):
        return (
            "{"
            + ",".join(
                f"{json.dumps(k, ensure_ascii=ascii_only)}:{render(v, ascii_only)}"
                for k, v in value.pairs
            )
            + "}"
        )
    if isinstance(value, dict):
        return render(Obj.of(value), ascii_only)
    if isinstance(value, list | tuple):
        return "[" + ",".join(render(v, ascii_only) for v in value) + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return json.dumps(value, ensure_ascii=ascii_only)


def breaks_body(value: Any) -> bool:
    """Whether the value holds text a parser may refuse as a whole."""
    if isinstance(value, Raw):
        return value.whole_body
    if isinstance(value, Obj):
        return any(breaks_body(v) for _, v in value.pairs)
    if isinstance(value, dict):
        return any(breaks_body(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(breaks_body(v) for v in value)
    return False


# --- Hostile values ---------------------------------------------------------------------

UNICODE_EDGES = [
    "\ud800",  # a lone high surrogate
    "\udfff",  # a lone low surrogate
    "\udc00\ud800",  # a pair in the wrong order
    "Ганна Ґудзь, вул. Їжакова",  # Cyrillic with Ukrainian letters
    "\u202eevil\u202c",  # right-to-left override
    "שלום עליכם",  # Hebrew
    "مرحبا بالعالم",  # Arabic
    "e\u0301\u0301\u0301\u0301",  # combining marks piled up
    "Z\u0351\u0363\u0368\u0341a\u0489l\u0334g\u0337o",  # zalgo text
    "👨‍👩‍👧‍👦🇺🇦🏳️‍🌈",  # emoji with joiners and flags
    "\U0010ffff\uffff\ufffe",  # non-characters
    "\ufeffwith a BOM",
    "\x00",  # NUL
    "nul\x00inside",
    "\x01\x1f\x7f\x85\u2028\u2029",  # control characters and line separators
    "",
    " ",
    "x" * 5000,  # longer than any text field allows
]

NUMBERS = [
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("-0"),
    Raw("-0.0"),
    Raw("1e400"),
    Raw("-1e400"),
    Raw("1e-400"),
    Raw("1E+2"),
    2**31,
    2**63,
    2**64,
    -(2**64),
    10**30,
    -1,
    0.5,
    Raw("1" + "0" * 5000, whole_body=True),  # past Python's int parsing limit
]


def nested(depth: int, kind: str) -> Raw:
    text = "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth
    # The server may refuse a body nested this deep as a whole.
    return Raw(text, whole_body=depth > 200)


DEPTHS = st.one_of(
    st.sampled_from([1, 31, 32, 33, 254, 255, 256, 100_000]),
    # About where Python's parser gives up (its recursion limit, less the stack in use).
    st.integers(min_value=900, max_value=1000),
    st.integers(min_value=500, max_value=3000),
)
DEEP = st.builds(nested, DEPTHS, st.sampled_from(["list", "object"]))
HUGE_ARRAYS = st.builds(
    lambda n, item: Raw("[" + ",".join([item] * n) + "]"),
    st.sampled_from([1_000, 10_000, 100_000]),
    st.sampled_from(["0", "null", '"a"', "{}", "[]"]),
)
TEXT = st.one_of(
    st.sampled_from(UNICODE_EDGES),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=30),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(NUMBERS),
    st.integers(),
    st.floats(),
    TEXT,
)
WRONG_TYPES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=5),
    st.dictionaries(TEXT, SCALARS, max_size=5),
)
HOSTILE = st.one_of(WRONG_TYPES, DEEP, HUGE_ARRAYS)
#: Bytes a JSON text cannot hold as they are: not UTF-8 (a stray continuation byte, a
#: surrogate, an overlong NUL, a sequence cut short), or a raw NUL or control character
#: inside a string.
RAW_BYTES = [b"\xff", b"\xed\xb3\xbf", b"\xc0\x80", b"\xe2\x82", b"\x00", b"nul\x00", b"\x1f"]
RAW_BYTES_MARK = "raw-bytes-go-here"

VISIT_FIELDS = [
    "id", "household_id", "visited_at", "outcome", "decision", "reasons", "reason_note",
    "leave_mode", "signed_refusal", "people_present", "needs", "planned_departure",
    "destination", "consent_to_share", "location", "notes", "corrects",
]  # fmt: skip
HOUSEHOLD_FIELDS = [
    "id", "settlement", "address", "location", "head_name", "phone", "members",
    "members_elderly", "members_children", "members_disabled", "notes", "observed_at",
    "base_version",
]  # fmt: skip
LOCATION_FIELDS = ["lat", "lon", "accuracy_m"]
ENVELOPE_FIELDS = ["batch_id", "device_id", "sent_at", "app_version", "households", "visits"]


@st.composite
def hostile_item(draw: st.DrawFn, fields: Sequence[str], make: Callable[[], dict[str, Any]]) -> Any:
    """A valid item (from `make`) with one field made hostile, a key given twice or a
    new key; or something that is not an item at all."""
    how = draw(st.sampled_from(["field", "location", "duplicate", "extra", "not_an_object"]))
    item = Obj.of(make())
    if how == "not_an_object":
        return draw(HOSTILE)
    if how == "field":
        return item.set(draw(st.sampled_from(fields)), draw(HOSTILE))
    if how == "location":
        location = Obj.of({"lat": 49.71, "lon": 37.61, "accuracy_m": 8.0})
        where = draw(st.sampled_from(LOCATION_FIELDS))
        return item.set("location", location.set(where, draw(HOSTILE)))
    if how == "duplicate":
        key = draw(st.sampled_from(fields))
        value = draw(HOSTILE)
        pair = (key, value)
        pairs = (*item.pairs, pair) if draw(st.booleans()) else (pair, *item.pairs)
        return Obj(pairs)
    return item.set(draw(TEXT), draw(HOSTILE))


# --- How the body travels ---------------------------------------------------------------


@dataclass(frozen=True)
class Wire:
    """How a body is sent: `refused` when it must be refused whatever the body."""

    name: str
    content_type: str | None = "application/json"
    encoding: str | None = None
    refused: bool = False

    def encode(self, body: bytes, cut: float) -> bytes:
        if self.name == "gzip":
            return gzip.compress(body)
        if self.name == "gzip, no header":
            return gzip.compress(body)
        if self.name == "gzip, truncated":
            packed = gzip.compress(body)
            return packed[: int(len(packed) * cut)]
        if self.name == "gzip, bad checksum":
            flipped = bytearray(gzip.compress(body))
            flipped[-8] ^= 0xFF  # the CRC-32 of the content
            return bytes(flipped)
        if self.name == "gzip, garbage":
            return b"\x1f\x8b\x08\x00" + body[:64]
        return body


WIRES = [
    Wire("json"),
    Wire("gzip", encoding="gzip"),
    Wire("gzip, no header"),  # gzip bytes sent as if they were JSON
    Wire("gzip, truncated", encoding="gzip", refused=True),
    Wire("gzip, bad checksum", encoding="gzip", refused=True),
    Wire("gzip, garbage", encoding="gzip", refused=True),
    Wire("brotli", encoding="br", refused=True),
    Wire("deflate", encoding="deflate", refused=True),
    Wire("no content type", content_type=None),
    Wire("text/plain", content_type="text/plain"),
    Wire("form", content_type="application/x-www-form-urlencoded"),
    Wire("multipart", content_type="multipart/form-data; boundary=x"),
    Wire("xml", content_type="application/xml"),
    Wire("json, latin-1", content_type="application/json; charset=latin-1"),
]


# --- A body -----------------------------------------------------------------------------


@dataclass
class Body:
    raw: bytes
    wire: Wire
    control_visit: str
    #: Whether the valid visit is still in the body as the server reads it.
    control_sent: bool
    #: ... and its household (else the visit waits for it: `pending`).
    household_sent: bool
    #: The body parses and only items are hostile: the answer must be a 200.
    must_apply: bool
    items: int


ENVELOPE_CHANGES = [
    "none", "none", "none", "field", "duplicate", "extra", "not_an_object", "too_many",
    "raw_bytes",
]  # fmt: skip


@st.composite
def bodies(draw: st.DrawFn, phone: Phone) -> Body:
    home = household()
    kept = visit(home["id"])
    households = [Obj.of(home)]
    households += draw(st.lists(hostile_item(HOUSEHOLD_FIELDS, household), max_size=3))
    visits = [Obj.of(kept)]
    visits += draw(st.lists(hostile_item(VISIT_FIELDS, lambda: visit(home["id"])), max_size=3))
    households = draw(st.permutations(households))
    visits = draw(st.permutations(visits))
    envelope: Any = Obj.of(phone.batch()).set("households", households).set("visits", visits)
    hostile, replaced = False, ""
    change = draw(st.sampled_from(ENVELOPE_CHANGES))
    if change == "field":
        replaced = draw(st.sampled_from(ENVELOPE_FIELDS))
        envelope = envelope.set(replaced, draw(HOSTILE))
        hostile = True
    elif change == "duplicate":
        key = draw(st.sampled_from(ENVELOPE_FIELDS))
        pair = (key, draw(HOSTILE))
        last = draw(st.booleans())  # the last of two keys counts
        envelope = Obj((*envelope.pairs, pair) if last else (pair, *envelope.pairs))
        hostile, replaced = last, key if last else ""
    elif change == "extra":
        key = draw(TEXT.filter(lambda k: k not in ENVELOPE_FIELDS))
        envelope = envelope.set(key, draw(HOSTILE))
    elif change == "not_an_object":
        envelope = draw(HOSTILE)
        hostile, replaced = True, "everything"
    elif change == "too_many":
        envelope = envelope.set("visits", Raw("[" + ",".join(["{}"] * 2001) + "]"))
        hostile, replaced = True, "visits"
    elif change == "raw_bytes":
        envelope = envelope.set("app_version", Raw(json.dumps(RAW_BYTES_MARK), whole_body=True))
        hostile = True
    raw = render(envelope, ascii_only=draw(st.booleans())).encode("utf-8", "surrogatepass")
    raw = raw.replace(RAW_BYTES_MARK.encode(), draw(st.sampled_from(RAW_BYTES)))
    wire = draw(st.sampled_from(WIRES))
    event(f"wire: {wire.name}")
    event(f"envelope: {change}")
    return Body(
        raw=wire.encode(raw, draw(st.floats(0.1, 0.95))),
        wire=wire,
        control_visit=str(kept["id"]),
        control_sent=replaced not in {"visits", "everything"},
        household_sent=replaced != "households",
        must_apply=not (hostile or breaks_body(envelope) or wire.refused)
        and wire.name != "gzip, no header",
        items=len(households) + len(visits),
    )


# --- The property -----------------------------------------------------------------------


@pytest.fixture
async def phone(client: httpx.AsyncClient, session: AsyncSession) -> Phone:
    pcode = await ensure_settlement(session)
    return await make_phone(client, session, settlements=[pcode])


async def stored(session: AsyncSession, visit_id: str) -> bool:
    rows = await read_fresh(session, select(Visit).where(col(Visit.id) == uuid.UUID(visit_id)))
    return len(rows) == 1


def check_refusal(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, response.text[:2000]
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    problem = response.json()
    assert problem["status"] == response.status_code
    assert problem.get("detail"), problem
    for error in problem.get("errors") or []:
        assert error["field"], problem


def check_results(response: httpx.Response, body: Body) -> None:
    answer = PushResponse.model_validate_json(response.content)  # raises if it is not one
    if body.must_apply:
        assert len(answer.results) == body.items
    kinds = {"household": 0, "visit": 0}
    for result in answer.results:
        position = kinds[result.kind]
        kinds[result.kind] += 1
        prefix = f"{result.kind}s.{position}"
        if result.status == "rejected":
            assert result.errors, result
            for error in result.errors:
                assert error.field == prefix or error.field.startswith(prefix + "."), (
                    prefix,
                    error,
                )
        else:
            assert result.status in STORED, result
            assert not result.errors, result
    controls = [r for r in answer.results if r.id == body.control_visit and r.kind == "visit"]
    expected = "applied" if body.household_sent else "pending"
    assert [r.status for r in controls] == ([expected] if body.control_sent else [])


@hypothesis_settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(data=st.data())
async def test_hostile_push_bodies_get_a_clear_answer_and_the_valid_visit_is_kept(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone, data: st.DataObject
) -> None:
    body = data.draw(bodies(phone), label="body")
    headers = dict(phone.headers)
    if body.wire.content_type is not None:
        headers["content-type"] = body.wire.content_type
    if body.wire.encoding is not None:
        headers["content-encoding"] = body.wire.encoding
    note(f"{body.wire.name}: {body.raw[:500]!r}")
    response = await client.post(PUSH, content=body.raw, headers=headers)
    event(f"status {response.status_code}")
    assert response.status_code < 500, response.text[:2000]
    if response.status_code == 200:
        check_results(response, body)
        assert await stored(session, body.control_visit) == body.control_sent
    else:
        assert not body.must_apply, response.text[:2000]
        check_refusal(response)
        assert not await stored(session, body.control_visit)
