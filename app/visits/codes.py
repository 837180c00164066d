"""The closed code lists a visit uses, with English and Ukrainian labels.

They draw on the Ukraine protection household surveys and on the reasons
residents around Kupiansk gave in 2023 for staying or leaving. `sensitive`
answers never leave the server at household level except to supervisors.
Change a list only with a reason in the commit: phones in the field carry it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    en: str
    uk: str
    sensitive: bool = False


OUTCOMES = (
    Code("contacted", "Household contacted", "Домогосподарство опитано"),
    Code("not_home", "Nobody at home", "Нікого немає вдома"),
    Code("refused", "Refused to talk", "Відмовилися від розмови"),
    Code("household_left", "Household has left", "Домогосподарство виїхало"),
    Code("house_damaged", "House damaged or destroyed", "Будинок пошкоджено або зруйновано"),
)

DECISIONS = (
    Code("leave", "Will leave", "Виїжджатиме"),
    Code("stay", "Will stay", "Залишається"),
    Code("undecided", "Undecided", "Ще не вирішили"),
)

REASONS_STAY = (
    Code("attachment_to_home", "Attachment to home", "Прив'язаність до дому"),
    Code("protecting_property", "Protecting property", "Охорона майна"),
    Code(
        "caring_for_animals_or_land", "Caring for animals or land", "Догляд за тваринами чи землею"
    ),
    Code(
        "caring_for_dependant", "Caring for a dependant", "Догляд за рідними, які потребують опіки"
    ),
    Code(
        "age_health_or_disability",
        "Age, health or disability",
        "Вік, стан здоров'я або інвалідність",
        sensitive=True,
    ),
    Code("no_transport", "No transport", "Немає транспорту"),
    Code("route_unsafe", "Route is unsafe", "Дорога небезпечна"),
    Code("cannot_afford_to_leave", "Cannot afford to leave", "Немає коштів на виїзд"),
    Code("fear_of_poverty", "Fear of poverty elsewhere", "Страх бідності в іншому місці"),
    Code("fear_of_loneliness", "Fear of loneliness elsewhere", "Страх самотності в іншому місці"),
    Code("nowhere_to_go", "Nowhere to go", "Немає куди їхати"),
    Code("lack_of_information", "Lack of information", "Брак інформації"),
    Code("keep_job", "Keeping a job", "Збереження роботи"),
    Code("fear_of_conscription", "Fear of conscription", "Страх мобілізації", sensitive=True),
    Code(
        "patriotism_or_defend_community",
        "Patriotism or defending the community",
        "Патріотизм або захист громади",
        sensitive=True,
    ),
    Code("hope_situation_improves", "Hope the situation improves", "Надія, що стане краще"),
    Code("previous_displacement", "Already displaced before", "Вже були переселені раніше"),
    Code("fear_of_not_returning", "Fear of not being able to return", "Страх не повернутися"),
    Code("refused_to_say", "Refused to say", "Відмовилися відповідати"),
    Code("other", "Other (see note)", "Інше (див. примітку)"),
)

REASONS_LEAVE = (
    Code("shelling_or_attacks", "Shelling or attacks", "Обстріли чи атаки"),
    Code("evacuation_order", "The evacuation order", "Розпорядження про евакуацію"),
    Code("children_safety", "Children's safety", "Безпека дітей"),
    Code("loss_of_utilities", "Loss of electricity, gas or water", "Немає світла, газу чи води"),
    Code("damage_to_housing", "Damage to housing", "Пошкодження житла"),
    Code("health_care_access", "Access to health care", "Доступ до медичної допомоги"),
    Code("family_elsewhere", "Family elsewhere", "Родина в іншому місці"),
    Code("no_livelihood", "No livelihood", "Немає засобів до існування"),
    Code("other", "Other (see note)", "Інше (див. примітку)"),
)

NEEDS = (
    Code("transport", "Transport", "Транспорт"),
    Code("accessible_transport", "Accessible transport", "Транспорт для людей з інвалідністю"),
    Code("medical_escort", "Medical escort", "Медичний супровід"),
    Code("pet_or_livestock_transport", "Transport for pets or livestock", "Перевезення тварин"),
    Code("accommodation", "Accommodation", "Житло"),
    Code("cash", "Cash assistance", "Грошова допомога"),
    Code("documents", "Documents", "Документи"),
    Code("information", "Information", "Інформація"),
    Code("none", "No needs", "Потреб немає"),
)

LEAVE_MODES = (
    Code("organised_evacuation", "Organised evacuation", "Організована евакуація"),
    Code("own_means", "Own means", "Власним транспортом"),
)

OUTCOME_CODES = frozenset(c.code for c in OUTCOMES)
DECISION_CODES = frozenset(c.code for c in DECISIONS)
STAY_REASONS = frozenset(c.code for c in REASONS_STAY)
LEAVE_REASONS = frozenset(c.code for c in REASONS_LEAVE)
NEED_CODES = frozenset(c.code for c in NEEDS)
LEAVE_MODE_CODES = frozenset(c.code for c in LEAVE_MODES)
SENSITIVE_REASONS = frozenset(c.code for c in (*REASONS_STAY, *REASONS_LEAVE) if c.sensitive)
OTHER = "other"
NO_NEEDS = "none"


ALL_REASONS = STAY_REASONS | LEAVE_REASONS
_REASONS_FOR = {"stay": STAY_REASONS, "leave": LEAVE_REASONS}


def reasons_for(decision: str | None) -> frozenset[str]:
    """The reason codes allowed with a decision: stay or leave reasons, or both when undecided."""
    return _REASONS_FOR.get(decision or "", ALL_REASONS)
