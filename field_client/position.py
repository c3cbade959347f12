"""Where the officer is (R9), for the field client: a fixed place, or a simulated walk for demos.

A real deployment reads the phone's or bodycam's GNSS; the command-line client has none, so it
reports a position it is given (``--position lat,lon``) or walks from there (``--walk``): a
pedestrian's pace, turning a little at each step, as a wall demo needs.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime

__all__ = ["Fix", "Walk", "parse_position"]

METRES_PER_DEGREE = 111_320.0
"""Metres per degree of latitude (and of longitude at the equator)."""


@dataclass(frozen=True)
class Fix:
    latitude: float
    longitude: float
    accuracy_m: float = 10.0
    """Radius of uncertainty, metres."""
    heading_deg: float | None = None
    """Direction of travel, degrees from north."""
    speed_mps: float | None = None

    def report(self, at: datetime | None = None) -> dict[str, object]:
        """The fields the dispatch server takes (``position`` message, ``POST /api/positions``)."""
        body: dict[str, object] = {
            "latitude": round(self.latitude, 7),
            "longitude": round(self.longitude, 7),
            "accuracy_m": self.accuracy_m,
            "at": (at or datetime.now(UTC)).isoformat(),
        }
        if self.heading_deg is not None:
            body["heading_deg"] = round(self.heading_deg, 1)
        if self.speed_mps is not None:
            body["speed_mps"] = round(self.speed_mps, 2)
        return body


def parse_position(text: str) -> Fix:
    """``"31.2304,121.4737"`` -> a fix there; ValueError with a clear message otherwise."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2:
        raise ValueError(
            f"a position is 'latitude,longitude' in degrees, e.g. 31.2304,121.4737, not {text!r}"
        )
    try:
        latitude, longitude = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"a position is two numbers in degrees, not {text!r}") from None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise ValueError(f"latitude must be within ±90 and longitude within ±180, not {text!r}")
    return Fix(latitude, longitude)


class Walk:
    """A simulated walk from ``start``: each :meth:`step` moves ``speed_mps * seconds`` metres on a
    heading that wanders by up to ``turn_deg`` either way."""

    def __init__(
        self, start: Fix, speed_mps: float = 1.4, turn_deg: float = 25.0, seed: int | None = None
    ) -> None:
        self._random = random.Random(seed)
        self.turn_deg = turn_deg
        heading = self._random.uniform(0, 360)
        self.fix = replace(start, heading_deg=heading, speed_mps=speed_mps)

    def step(self, seconds: float) -> Fix:
        fix = self.fix
        assert fix.heading_deg is not None and fix.speed_mps is not None
        heading = (fix.heading_deg + self._random.uniform(-self.turn_deg, self.turn_deg)) % 360
        metres = fix.speed_mps * seconds
        north = metres * math.cos(math.radians(heading))
        east = metres * math.sin(math.radians(heading))
        latitude = max(-90.0, min(90.0, fix.latitude + north / METRES_PER_DEGREE))
        scale = max(1e-6, math.cos(math.radians(latitude)))
        longitude = (fix.longitude + east / (METRES_PER_DEGREE * scale) + 180) % 360 - 180
        self.fix = replace(fix, latitude=latitude, longitude=longitude, heading_deg=heading)
        return self.fix
