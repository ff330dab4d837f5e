"""Keep internal failures away from business code."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_log = logging.getLogger("otel_stigmer")

P = ParamSpec("P")
R = TypeVar("R")

#: Set to "1" (the project's own test suite does) to re-raise internal errors loudly.
RAISE_ENV = "OTEL_STIGMER_RAISE_INTERNAL_ERRORS"


def swallow_errors(default: R) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a hook so an internal exception is logged and ``default`` returned instead."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except Exception:
                if os.environ.get(RAISE_ENV) == "1":
                    raise
                _log.exception("otel-stigmer internal error in %s (ignored)", fn.__qualname__)
                return default

        return guarded

    return decorate
