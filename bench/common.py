"""What every benchmark shares: the machine it ran on, percentiles, server memory and CPU,
seeding accounts, and signing phones in over HTTP."""

from __future__ import annotations

import os
import platform
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import httpx

from app.core.security import hash_password

PASSWORD = "benchmark-password-synthetic"  # noqa: S105
#: Codes the synthetic visits and households draw on (app/visits/codes.py).
STAY = ["attachment_to_home", "protecting_property", "no_transport", "fear_of_loneliness"]
LEAVE = ["shelling_or_attacks", "evacuation_order", "children_safety", "loss_of_utilities"]
NEEDS = ["transport", "accessible_transport", "medical_escort", "cash", "information"]


def machine() -> str:
    """One line naming the machine: CPU model, cores, memory, OS, Python."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            total_kib = int(meminfo.readline().split()[1])
    except OSError:
        total_kib = 0
    return (
        f"{model}, {os.cpu_count()} cores, {total_kib / 1024 / 1024:.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _group_pids(group: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # field 5 of stat: the process group id
            pids.append(int(entry))
    return pids


def group_rss_bytes(group: int) -> int:
    """Resident memory of every process in a process group (the server and its workers)."""
    total = 0
    for pid in _group_pids(group):
        try:
            with open(f"/proc/{pid}/status", encoding="utf-8") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def group_cpu_seconds(group: int) -> float:
    """User plus system CPU time used so far by a process group's live processes."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _group_pids(group):
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@dataclass
class Device:
    username: str
    device_id: uuid.UUID
    token: str = ""


async def seed_field_workers(dsn: str, pcode: str, count: int) -> list[Device]:
    """A settlement and `count` synthetic field workers assigned to it, inserted directly."""
    password_hash = hash_password(PASSWORD)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO settlement (pcode, katottg, category, name_uk, name_en, hromada_pcode, "
            "hromada_uk, hromada_en, raion_pcode, oblast_pcode, evacuation_ordered, updated_at) "
            "VALUES ($1, $2, 'village', 'Синтетичне', 'Syntetychne', $3, 'Синтетична', "
            "'Syntetychna', $4, $5, true, now())",
            pcode,
            pcode + "0000000",
            pcode[:9],
            pcode[:6],
            pcode[:4],
        )
        devices = [Device(f"bench-field-{i:03d}", uuid.uuid4()) for i in range(count)]
        users = [(uuid.uuid4(), d.username) for d in devices]
        await connection.executemany(
            "INSERT INTO user_account (id, username, full_name, role, password_hash, is_active, "
            "created_at, updated_at) VALUES ($1, $2, 'Synthetic benchmark worker', "
            "'field_worker', $3, true, now(), now())",
            [(uid, name, password_hash) for uid, name in users],
        )
        await connection.executemany(
            "INSERT INTO settlement_assignment (user_id, settlement_pcode, assigned_at) "
            "VALUES ($1, $2, now())",
            [(uid, pcode) for uid, _ in users],
        )
    finally:
        await connection.close()
    return devices


async def sign_in(client: httpx.AsyncClient, device: Device) -> None:
    response = await client.post(
        "/api/v1/auth/token",
        data={
            "username": device.username,
            "password": PASSWORD,
            "client_id": str(device.device_id),
        },
    )
    response.raise_for_status()
    device.token = response.json()["access_token"]


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)
