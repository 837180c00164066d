"""What simulated field workers record: random, valid, synthetic visits and household edits.

Codes come from app/visits/codes.py, as the field app gets them from `GET /api/v1/codes`.
"""

from __future__ import annotations

import random
from datetime import timedelta

from app.visits import codes
from bench.device import Device

_NEEDS = sorted(codes.NEED_CODES - {codes.NO_NEEDS})
_STREETS = ("Синтетична", "Вигадана", "Умовна", "Тестова")


def new_household(rng: random.Random, device: Device, settlement: str) -> str:
    """Register a household the worker found; returns its id."""
    return device.record_household(
        settlement,
        address=f"вул. {rng.choice(_STREETS)}, {rng.randrange(1, 300)}",
        head_name="Синтетична Особа",
        members=rng.randint(1, 6),
        location={
            "lat": round(49.70 + rng.random() / 10, 6),
            "lon": round(37.60 + rng.random() / 10, 6),
            "accuracy_m": rng.randint(3, 30),
        },
    )


def edit_household(rng: random.Random, device: Device, household_id: str) -> None:
    """Change one or two profile fields of a household the phone knows."""
    choices = {
        "members": rng.randint(1, 8),
        "notes": f"Синтетична примітка {rng.randrange(1000)}",
        "phone": f"+38000{rng.randrange(10**7):07d}",
        "members_elderly": rng.randint(0, 3),
    }
    names = rng.sample(sorted(choices), k=rng.randint(1, 2))
    device.edit_household(household_id, **{n: choices[n] for n in names})


def visit(rng: random.Random, device: Device, household_id: str) -> str:
    """A visit at the door, timed a little before now on the phone's clock."""
    at = device.now() - timedelta(seconds=rng.uniform(0, 600))
    roll = rng.random()
    if roll < 0.15:
        return device.record_visit(
            household_id, outcome=rng.choice(["not_home", "refused"]), visited_at=at
        )
    decision = rng.choice(["stay", "leave", "undecided"])
    reasons = rng.sample(sorted(codes.reasons_for(decision)), k=rng.randint(0, 2))
    needs = [codes.NO_NEEDS] if rng.random() < 0.2 else rng.sample(_NEEDS, k=rng.randint(0, 2))
    departure = (at + timedelta(days=rng.randint(0, 14))).date().isoformat()
    return device.record_visit(
        household_id,
        decision=decision,
        visited_at=at,
        reasons=reasons,
        reason_note="Синтетична примітка" if codes.OTHER in reasons else "",
        needs=needs,
        planned_departure=departure if decision == "leave" else None,
        consent_to_share=rng.random() < 0.8,
        people_present=rng.randint(1, 5),
    )
