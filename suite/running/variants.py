"""A job's variant: the knobs it runs with that differ from its preset, as one readable string.

``decay=0.9,switch_interval=2`` (keys sorted; '' for the preset as shipped). Values are written compactly
(``depths=[1,1]``), so the string is split on commas outside brackets. Plain standard library: the
leaderboard and the dashboard parse variants without importing anything heavy.
"""

from __future__ import annotations

import json
from typing import Any


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return repr(value) if isinstance(value, float) else str(value)


def format_variant(knobs: dict[str, Any]) -> str:
    return ",".join(f"{key}={format_value(knobs[key])}" for key in sorted(knobs))


def split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets or braces: ``a=[1,2],b=3`` -> ``['a=[1,2]', 'b=3']``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[({":
            depth += 1
        elif char in "])}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_variant(variant: str) -> dict[str, str]:
    """``'decay=0.9,switch_interval=2'`` -> ``{'decay': '0.9', 'switch_interval': '2'}`` (values as written)."""
    if not variant:
        return {}
    return dict(part.partition("=")[::2] for part in split_top_level(variant))
