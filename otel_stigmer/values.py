"""Attribute values to wire values: bounded, valid text and in-range numbers (pure).

A cut string ends with :data:`TRUNCATION_MARKER` and the number of characters removed;
times are clamped to 1970..9999 so every derived number fits the int64 fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from opentelemetry.util.types import Attributes

__all__ = [
    "TRUNCATION_MARKER",
    "attribute_dict",
    "attributes_of",
    "attributes_view",
    "bounded_text",
    "clock_ns",
    "int_of",
    "number_of",
]

TRUNCATION_MARKER = "…[truncated "
# 9999-12-31T23:59:59Z in ns: later times (a broken clock) are reported at this instant.
_MAX_TIME_NS = 253_402_300_799 * 1_000_000_000


def attributes_of(item: object) -> Mapping[str, Any]:
    """A private copy of a span's or span event's attributes.

    The SDK keeps them in ``BoundedAttributes``, whose public view copies key by key in
    Python; its underlying dict copies at C speed, atomically under the GIL (so a span
    still being written to by the business thread is read consistently).
    """
    raw = getattr(getattr(item, "attribute_dict", None), "_dict", None)
    if isinstance(raw, dict):
        return dict(raw)
    return attribute_dict(getattr(item, "attributes", None))


def attributes_view(span: Any) -> Any:
    """The span's attributes as a mapping to read at once, cheaply.

    The SDK's public ``attributes`` wraps ``BoundedAttributes``, a Python mapping whose
    every lookup is a Python call; its inner dict answers at C speed. Anything else is
    read through the public property.
    """
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    if type(inner) is dict:
        return inner
    return span.attributes


def attribute_dict(attributes: Attributes) -> Mapping[str, Any]:
    if not attributes:
        return {}
    for _ in range(3):
        try:
            return dict(attributes)
        except RuntimeError:  # mutated by the business thread while copying; try again
            continue
    return {}


def bounded_text(value: object, limit: int) -> str:
    """Render an attribute value as valid UTF-8 text of at most ``limit`` characters."""
    if type(value) is str and len(value) <= limit and value.isascii():
        return value  # the common case, without further checks
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(bounded_text(item, limit) for item in value[:64]) + "]"
    else:
        text = str(value)
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > limit:
        removed = len(text) - limit
        marker = f"{TRUNCATION_MARKER}{removed} chars]"
        text = text[: max(0, limit - len(marker))] + marker
    return text


def clock_ns(value: object) -> int:
    """A time in ns within 1970..9999, so every derived number fits the int64 fields."""
    number = number_of(value) if not isinstance(value, int) else value
    if number is None:
        return 0
    return int(min(max(number, 0), _MAX_TIME_NS))


def number_of(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def int_of(value: object) -> int:
    number = number_of(value)
    if number is None:
        return 0
    return int(max(-(2**31), min(2**31 - 1, number)))
