"""Durations as operators write them on a command line: ``30m``, ``24h``, ``1h30m``, ``0s``."""

from __future__ import annotations

import re

import click

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_SECONDS = (86400, 3600, 60, 1)


def parse_duration(text: str) -> int:
    """Return the seconds ``text`` spells, or raise ValueError."""
    match = _DURATION.match(text.strip().lower())
    if not text.strip() or match is None:
        raise ValueError(text)
    return sum(int(part) * unit for part, unit in zip(match.groups(), _SECONDS, strict=True) if part)


def format_duration(seconds: float) -> str:
    """Spell ``seconds`` the way ``parse_duration`` reads it."""
    rest = int(seconds)
    parts = []
    for unit, suffix in zip(_SECONDS, "dhms", strict=True):
        if rest >= unit:
            parts.append(f"{rest // unit}{suffix}")
            rest %= unit
    return "".join(parts) or "0s"


class Duration(click.ParamType[int]):
    """A click option type for durations."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """Return the duration in seconds."""
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a duration such as 30m, 24h or 0s", param, ctx)
