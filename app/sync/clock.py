"""Correcting phone clocks: the offset of a batch, and each device time corrected by it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: Corrected times before this are garbage (a phone clock reset is corrected by the offset).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ClockCorrection:
    """How to read a batch's device times on the server's clock."""

    offset: timedelta
    received_at: datetime

    @classmethod
    def estimate(
        cls, sent_at: datetime, received_at: datetime, tolerance: float
    ) -> ClockCorrection:
        """Offset = receive time - the phone's send time; ignored within `tolerance` seconds."""
        offset = received_at - sent_at
        if abs(offset.total_seconds()) <= tolerance:
            offset = timedelta(0)
        return cls(offset=offset, received_at=received_at)

    @property
    def applied(self) -> bool:
        return self.offset != timedelta(0)

    def correct(self, device_time: datetime) -> tuple[datetime, bool]:
        """The corrected time, and whether it was still in the future and clamped to receipt.

        Raises `OverflowError` when the corrected time is before EARLIEST or unrepresentable.
        """
        corrected = device_time + self.offset
        if corrected < EARLIEST:
            raise OverflowError("before the earliest accepted time")
        if corrected > self.received_at:
            return self.received_at, True
        return corrected, False
