"""pytest plugin (registered through the ``pytest11`` entry point): the ``stigmer_events`` fixture.

Installing otel-stigmer is enough for a test suite to use the fixture::

    def test_ingest(stigmer_events):
        ingest(["a"], execution_id="wfexec-1")
        stigmer_events.assert_sequence(["workflow_started", ("task_started", "fetch"), ...])

Deterministic ids and timestamps (for snapshot asserts on ``stigmer_events.timeline()``) are
switched on for a whole suite with the ini option ``stigmer_deterministic = true``, or for one
test with ``@pytest.mark.stigmer_deterministic`` (``@pytest.mark.stigmer_deterministic(False)``
switches them off again).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from otel_stigmer.testing._capture import ProgressCapture

_INI = "stigmer_deterministic"
_MARKER = "stigmer_deterministic"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``stigmer_deterministic`` ini option."""
    parser.addini(
        _INI,
        "stigmer_events: renumber event ids, trace/span ids and timestamps (snapshot tests)",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``stigmer_deterministic`` marker, and tell ``configure()`` it runs in tests.

    In a test session, ``otel_stigmer.configure()`` with no ``STIGMER_SERVICE_*`` connection
    variable set logs one warning and reports nothing, instead of failing collection of a
    module that calls it at import (the fixture captures the events anyway).
    """
    from otel_stigmer._configure import set_test_session  # noqa: PLC0415

    set_test_session(True)
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(enabled=True): stigmer_events renumbers ids and timestamps for this test",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """End of the test session: a missing endpoint is an error again."""
    from otel_stigmer._configure import set_test_session  # noqa: PLC0415

    set_test_session(False)


def _deterministic(request: pytest.FixtureRequest) -> bool:
    marker = request.node.get_closest_marker(_MARKER)
    if marker is not None:
        return bool(marker.args[0]) if marker.args else bool(marker.kwargs.get("enabled", True))
    return bool(request.config.getini(_INI))


@pytest.fixture
def stigmer_events(request: pytest.FixtureRequest) -> Iterator[ProgressCapture]:
    """Capture the progress events the test's workflows and tasks produce, in memory.

    No network and no configuration: events are routed to the yielded
    :class:`~otel_stigmer.testing.ProgressCapture` for the duration of the test, and any live
    Stigmer processor is muted meanwhile.
    """
    # Imported here so that loading the plugin at pytest start-up stays cheap and safe.
    from otel_stigmer.testing._capture import capture_progress  # noqa: PLC0415

    with capture_progress(deterministic=_deterministic(request)) as capture:
        yield capture
