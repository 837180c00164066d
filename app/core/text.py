"""Constrained types for what phones send: text PostgreSQL can store, GPS fixes.

Pydantic refuses lone surrogates in these constrained strings (`string_unicode`); NUL
bytes are refused here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError


def _storable(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_byte", "contains a NUL byte, which cannot be stored")
    return value


def _in_range(value: datetime) -> datetime:
    if EARLIEST_YEAR < value.year < LATEST_YEAR:  # an offset moves it by less than a day
        return value
    try:
        year = value.astimezone(UTC).year
    except OverflowError:
        year = 0
    if not EARLIEST_YEAR <= year <= LATEST_YEAR:
        raise PydanticCustomError(
            "out_of_range",
            "must be between {low} and {high}",
            {"low": EARLIEST_YEAR, "high": LATEST_YEAR},
        )
    return value


EARLIEST_YEAR, LATEST_YEAR = 1900, 2200

#: A timestamp with an offset, in a range every database can store.
Instant = Annotated[AwareDatetime, AfterValidator(_in_range)]
ShortText = Annotated[str, Field(max_length=200), AfterValidator(_storable)]
PhoneNumber = Annotated[str, Field(max_length=40), AfterValidator(_storable)]
SettlementCode = Annotated[str, Field(pattern=r"^UA[0-9]{10}$")]
Address = Annotated[str, Field(max_length=500), AfterValidator(_storable)]
Note = Annotated[str, Field(max_length=4000), AfterValidator(_storable)]
Tag = Annotated[str, Field(max_length=64), AfterValidator(_storable)]

#: Patterns for query and path parameters: a NUL byte would reach PostgreSQL and fail.
NO_NUL = r"^[^\x00]*$"
SETTLEMENT_PCODE = r"^UA[0-9]{10}$"
HROMADA_PCODE = r"^UA[0-9]{7}$"


class Location(BaseModel):
    """A GPS fix as the phone took it."""

    model_config = ConfigDict(extra="ignore")

    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, examples=[49.7106])
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, examples=[37.6156])
    accuracy_m: float | None = Field(default=None, ge=0, le=100_000, allow_inf_nan=False)
