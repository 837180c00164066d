"""Synthetic demo data: the real settlements of Kupianskyi raion, made-up households and accounts.

Everything this module invents is synthetic and says so: household notes carry
SYNTHETIC_LABEL, names are random pairings of common first names and surnames,
phone numbers use the unassigned +380 00 prefix, and the settlements marked as
under an evacuation order are an illustrative selection, not the 2023 list.
Loading twice changes nothing: ids are derived from fixed seeds and existing
accounts are kept.
"""

from __future__ import annotations

import random
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth
from app.auth.models import Role
from app.core.errors import NotFound
from app.households import service as households
from app.households.models import Household
from app.settlements import service as settlements

SYNTHETIC_LABEL = "SYNTHETIC DEMO RECORD: not a real household."
ILLUSTRATIVE_ORDER_NOTE = (
    "Settlements marked under the evacuation order are an illustrative selection "
    "(Petropavlivska, then Dvorichanska hromada), not the 2023 list."
)
ORDER_DATE = date(2023, 8, 10)
ORDER_COUNT = 37
FIELD_WORKER_SETTLEMENTS = 3
DEMO_NAMESPACE = uuid.UUID("5f0b8d2e-6a43-4c1e-9d0e-2f7d3f1b9a10")
ORDER_HROMADAS = ("Petropavlivska", "Dvorichanska")

DEMO_ACCOUNTS: tuple[tuple[str, Role, str], ...] = (
    ("demo-admin", Role.admin, "Demo Administrator (synthetic)"),
    ("demo-supervisor", Role.supervisor, "Demo Supervisor (synthetic)"),
    ("demo-field", Role.field_worker, "Demo Field Worker (synthetic)"),
    ("demo-partner", Role.partner, "Demo Partner (synthetic)"),
)

_FIRST_NAMES = (
    "Олександр", "Іван", "Микола", "Василь", "Петро", "Сергій", "Володимир", "Юрій",
    "Ганна", "Марія", "Олена", "Наталія", "Тетяна", "Валентина", "Людмила", "Ніна",
)  # fmt: skip
_SURNAMES = (
    "Бондаренко", "Ткаченко", "Кравченко", "Коваленко", "Шевченко", "Мельник", "Олійник",
    "Савченко", "Руденко", "Марченко", "Левченко", "Гончаренко", "Поліщук", "Литвиненко",
)  # fmt: skip
_STREETS = (
    "вул. Центральна", "вул. Шкільна", "вул. Садова", "вул. Миру", "вул. Польова",
    "вул. Набережна", "пров. Вишневий", "вул. Гагаріна",
)  # fmt: skip


@dataclass
class DemoReport:
    settlements: int = 0
    under_order: int = 0
    households_created: int = 0
    #: Passwords of the accounts created by this load; shown once, never stored in clear.
    new_accounts: dict[str, str] = field(default_factory=dict)
    existing_accounts: list[str] = field(default_factory=list)


def _order_selection(rows: list[dict[str, object]]) -> list[str]:
    by_hromada = sorted(
        (ORDER_HROMADAS.index(str(r["hromada_en"])), str(r["pcode"]))
        for r in rows
        if r["hromada_en"] in ORDER_HROMADAS
    )
    return [pcode for _, pcode in by_hromada[:ORDER_COUNT]]


def _synthetic_household(
    rng: random.Random, index: int, pcode: str, creator: uuid.UUID
) -> Household:
    members = rng.randint(1, 6)
    elderly = rng.randint(0, min(2, members))
    return Household(
        id=uuid.uuid5(DEMO_NAMESPACE, f"household-{index}"),
        settlement_pcode=pcode,
        address=f"{rng.choice(_STREETS)}, {rng.randint(1, 120)}",
        lat=round(49.71 + rng.uniform(-0.35, 0.35), 5),
        lon=round(37.61 + rng.uniform(-0.45, 0.45), 5),
        accuracy_m=float(rng.choice((5, 10, 25, 50))),
        head_name=f"{rng.choice(_SURNAMES)} {rng.choice(_FIRST_NAMES)}",
        phone=f"+38000{rng.randint(0, 9_999_999):07d}",
        members=members,
        members_elderly=elderly,
        members_children=rng.randint(0, members - elderly),
        members_disabled=rng.randint(0, 1),
        notes=SYNTHETIC_LABEL,
        created_by=creator,
    )


async def _ensure_account(
    session: AsyncSession, report: DemoReport, username: str, role: Role, full_name: str
) -> uuid.UUID:
    try:
        user = await auth.get_user_by_username(session, username)
    except NotFound:
        password = secrets.token_urlsafe(12)
        user = await auth.create_user(
            session,
            username=username,
            role=role,
            password=password,
            full_name=full_name,
            actor="demo",
        )
        report.new_accounts[username] = password
    else:
        report.existing_accounts.append(username)
    return user.id


async def load_demo(
    session: AsyncSession, *, household_count: int = 300, seed: int = 2023
) -> DemoReport:
    """Load the settlements, mark an illustrative order, add accounts and synthetic households."""
    report = DemoReport()
    text = settlements.BUNDLED_SETTLEMENTS.read_text(encoding="utf-8")
    rows = settlements.parse_settlements_csv(text)
    order = set(_order_selection(rows))
    for row in rows:
        row["evacuation_ordered"] = row["pcode"] in order
        row["evacuation_ordered_on"] = ORDER_DATE if row["pcode"] in order else None
    report.settlements = await settlements.upsert(session, rows, actor="demo")
    report.under_order = len(order)

    ids = {
        username: await _ensure_account(session, report, username, role, full_name)
        for username, role, full_name in DEMO_ACCOUNTS
    }
    ordered = sorted(order)
    await settlements.assign(
        session, ids["demo-supervisor"], ordered, username="demo-supervisor", actor="demo"
    )
    await settlements.assign(
        session,
        ids["demo-field"],
        ordered[:FIELD_WORKER_SETTLEMENTS],
        username="demo-field",
        actor="demo",
    )

    rng = random.Random(seed)  # noqa: S311  (synthetic data, not security)
    demo_households = [
        _synthetic_household(rng, i, rng.choice(ordered), ids["demo-field"])
        for i in range(household_count)
    ]
    report.households_created = await households.add_new(session, demo_households)
    return report
