"""A settable clock for tests that stand in for ``utcnow`` (deadlines are counted in Beijing days)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

BEIJING = timezone(timedelta(hours=8))


def bj(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A Beijing wall-clock moment, as the UTC instant the application stores."""
    return datetime(year, month, day, hour, minute, tzinfo=BEIJING).astimezone(UTC)


class Clock:
    """What a patched ``utcnow`` answers while a test runs."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> datetime:
        self.now = moment.astimezone(UTC)
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now
