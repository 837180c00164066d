"""What the settlement progress endpoints return: each settlement's counts, and one
settlement's counts with its reasons and needs broken down."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue

PROGRESS_EXAMPLE: dict[str, JsonValue] = {
    "households": 214,
    "visited": 187,
    "leave": 96,
    "stay": 61,
    "undecided": 18,
    "no_decision": 39,
    "needs_transport": 42,
    "open_conflicts": 3,
    "last_visit": "2026-11-20T16:41:07Z",
}

SETTLEMENT_EXAMPLE: dict[str, JsonValue] = {
    "pcode": "UA6308013001",
    "name_uk": "Петропавлівка",
    "name_en": "Petropavlivka",
    "hromada_pcode": "UA6308013",
    "hromada_uk": "Петропавлівська",
    "hromada_en": "Petropavlivska",
    "evacuation_ordered": True,
    "evacuation_ordered_on": "2023-08-10",
    "progress": PROGRESS_EXAMPLE,
}


class Progress(BaseModel):
    """Where the work in one settlement stands. Households merged into another are not
    counted; each count is of households, not of visits."""

    households: int = Field(description="Households registered here (merged duplicates left out).")
    visited: int = Field(description="Households visited at least once.")
    leave: int = Field(description="Households whose current decision is to leave.")
    stay: int = Field(description="Households whose current decision is to stay.")
    undecided: int = Field(description="Households that said they have not decided yet.")
    no_decision: int = Field(
        description="Households with no decision recorded: not visited yet, or never reached "
        "(nobody at home, refused to talk)."
    )
    needs_transport: int = Field(
        description="Households that need transport or accessible transport to leave."
    )
    open_conflicts: int = Field(
        description="Conflicts over this settlement's households still waiting for a supervisor."
    )
    last_visit: datetime | None = Field(description="The most recent visit here; null if none.")


class SettlementProgress(BaseModel):
    """One settlement, its evacuation order, and where the work there stands."""

    model_config = ConfigDict(json_schema_extra={"examples": [SETTLEMENT_EXAMPLE]})

    pcode: str = Field(description="The settlement's P-code (KATOTTG).")
    name_uk: str
    name_en: str
    hromada_pcode: str
    hromada_uk: str
    hromada_en: str
    evacuation_ordered: bool = Field(description="Whether the settlement is under the order.")
    evacuation_ordered_on: date | None = Field(description="When the order was given.")
    progress: Progress


class CodeCount(BaseModel):
    """How many households gave one reason, or have one need."""

    code: str = Field(examples=["attachment_to_home"])
    en: str = Field(examples=["Attachment to home"])
    uk: str = Field(examples=["Прив'язаність до дому"])
    sensitive: bool = Field(
        default=False,
        description="A sensitive answer: never shown at household level outside supervisors.",
    )
    households: int = Field(examples=[37])


class SettlementSummary(SettlementProgress):
    """One settlement's progress, with every reason and every need counted."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **SETTLEMENT_EXAMPLE,
                    "reasons": [
                        {
                            "code": "shelling_or_attacks",
                            "en": "Shelling or attacks",
                            "uk": "Обстріли чи атаки",
                            "sensitive": False,
                            "households": 71,
                        },
                        {
                            "code": "attachment_to_home",
                            "en": "Attachment to home",
                            "uk": "Прив'язаність до дому",
                            "sensitive": False,
                            "households": 44,
                        },
                        {
                            "code": "age_health_or_disability",
                            "en": "Age, health or disability",
                            "uk": "Вік, стан здоров'я або інвалідність",
                            "sensitive": True,
                            "households": 19,
                        },
                    ],
                    "needs": [
                        {
                            "code": "transport",
                            "en": "Transport",
                            "uk": "Транспорт",
                            "sensitive": False,
                            "households": 35,
                        },
                        {
                            "code": "accessible_transport",
                            "en": "Accessible transport",
                            "uk": "Транспорт для людей з інвалідністю",
                            "sensitive": False,
                            "households": 9,
                        },
                    ],
                }
            ]
        }
    )

    reasons: list[CodeCount] = Field(
        description="Every reason code, stay and leave, with how many households gave it "
        "(a household may give several), most often given first. Sensitive reasons included."
    )
    needs: list[CodeCount] = Field(
        description="Every need code with how many households have it, most common first."
    )
