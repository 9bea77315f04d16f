"""Label horizons: k events of the sampled stream, or h seconds of clock time.

Written in ``params.yaml`` (``features.horizons``, ``train.horizon``), in ``features_meta.json`` and in
``bundle.json`` as a plain integer for events (``10``) and as a string carrying its unit for clock time
(``"1s"``, ``"10s"``; ``"500ms"`` is stored as ``"0.5s"``). A bare string such as ``"10"`` is refused, so
10 events can never be read as 10 seconds or the other way round. Every place that needs the unit
(feature metadata, the model bundle, evaluation reports) carries it next to the value.

The key of a horizon names its columns (``label_k10``, ``ret_k10``; ``label_k1s``, ``ret_k1s``) and its
entry in the feature set's ``alpha`` map (``"10"``, ``"1s"``): event horizons keep the names they always
had.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from hftpipe.errors import ConfigError

EVENTS, SECONDS = "events", "seconds"
HorizonUnit = Literal["events", "seconds"]
_CLOCK = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|ms)\s*$")
HELP = "a horizon is a whole number of events (10) or a clock time with its unit ('1s', '500ms')"


@dataclass(frozen=True)
class Horizon:
    """One label horizon: ``events`` (k) or ``seconds`` (h), never both."""

    events: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.events is None) == (self.seconds is None):
            raise ConfigError(f"a horizon is either events or seconds; got events={self.events}, "
                              f"seconds={self.seconds}")

    @property
    def unit(self) -> HorizonUnit:
        return EVENTS if self.events is not None else SECONDS

    @property
    def is_clock(self) -> bool:
        return self.seconds is not None

    @property
    def value(self) -> int | str:
        """The form written in params.yaml and JSON: 10, or '1s'."""
        return self.events if self.events is not None else f"{self.seconds:g}s"

    @property
    def key(self) -> str:
        """Column suffix and alpha-map key: '10', or '1s'."""
        return str(self.value)

    def describe(self) -> str:
        """For humans: '10 events' or '1 s'."""
        return f"{self.events} events" if self.events is not None else f"{self.seconds:g} s"

    def __str__(self) -> str:
        return self.key


def parse_horizon(value: object, key: str = "horizon") -> Horizon:
    """A :class:`Horizon` from its params/JSON form (an int, a '<n>s' / '<n>ms' string, or a Horizon).

    Raises:
        ConfigError: anything else, naming ``key``.
    """
    if isinstance(value, Horizon):
        return value
    if isinstance(value, bool):
        raise ConfigError(f"{key}: {value!r} is not a horizon; {HELP}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{key}: {value!r} is not a horizon; {HELP}")
        return Horizon(events=value)
    if isinstance(value, str):
        match = _CLOCK.match(value)
        if match:
            seconds = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
            if seconds > 0 and math.isfinite(seconds):
                return Horizon(seconds=seconds)
    raise ConfigError(f"{key}: {value!r} is not a horizon; {HELP}")


def horizon_value(value: object, key: str = "horizon") -> int | str:
    """The canonical params/JSON form of a horizon (10 stays 10; '500ms' becomes '0.5s')."""
    return parse_horizon(value, key).value


def horizon_key(value: object) -> str:
    """The column suffix / alpha key of a horizon ('10', '1s')."""
    return parse_horizon(value).key


def horizon_info(value: object) -> dict[str, int | str]:
    """``{"horizon": 10, "horizon_unit": "events"}`` (or ``"1s"``, ``"seconds"``): how bundles and reports store it."""
    h = parse_horizon(value)
    return {"horizon": h.value, "horizon_unit": h.unit}


def horizon_from_key(key: str) -> Horizon:
    """The horizon a column key / alpha-map key names ('10' -> 10 events, '1s' -> 1 second)."""
    return parse_horizon(int(key) if str(key).isdigit() else key)
