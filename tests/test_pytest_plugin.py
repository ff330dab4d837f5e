"""The stigmer_events fixture reaches a user's test suite through the pytest11 entry point."""

from __future__ import annotations

import importlib.metadata

import pytest

pytest_plugins = ["pytester"]

USER_WORKFLOW = """
from otel_stigmer.decorators import task, workflow

@task
def fetch(url):
    return url

@workflow(name="ingest")
def ingest(urls, execution_id):
    for url in urls:
        fetch(url)
"""


def test_entry_point_is_registered() -> None:
    """The installed package registers the plugin module under the pytest11 group."""
    points = importlib.metadata.entry_points(group="pytest11")
    assert [p.value for p in points if p.name == "otel_stigmer"] == [
        "otel_stigmer.testing.pytest_plugin"
    ]


def test_throwaway_project_uses_the_fixture(pytester: pytest.Pytester) -> None:
    """A project with no conftest and no plugin setting gets stigmer_events just by install."""
    pytester.makepyfile(user_workflow=USER_WORKFLOW)
    pytester.makepyfile(
        test_user="""
        import pytest
        from user_workflow import ingest

        def test_sequence(stigmer_events):
            ingest(["a"], execution_id="wf-user")
            stigmer_events.assert_sequence([
                "workflow_started",
                ("task_started", "fetch"),
                ("task_completed", "fetch"),
                "workflow_completed",
            ])
            assert stigmer_events.for_execution("wf-user").types()[-1] == "workflow_completed"
            assert stigmer_events[0].event_id != "evt-1"

        @pytest.mark.stigmer_deterministic
        def test_snapshot(stigmer_events):
            ingest(["a"], execution_id="wf-user")
            assert [e.event_id for e in stigmer_events][:2] == ["evt-1", "evt-2"]
            assert stigmer_events.timeline().splitlines()[1].split() == [
                "task_started", "fetch", "running"
            ]
        """
    )
    result = pytester.runpytest_subprocess(
        "-W", "error", "--strict-markers", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=2)


def test_ini_option_and_marker_override(pytester: pytest.Pytester) -> None:
    """stigmer_deterministic = true in the ini applies to all tests; the marker can turn it off."""
    pytester.makeini("[pytest]\nstigmer_deterministic = true\n")
    pytester.makepyfile(user_workflow=USER_WORKFLOW)
    pytester.makepyfile(
        test_ini="""
        import pytest
        from user_workflow import ingest

        def test_on(stigmer_events):
            ingest([], execution_id="wf-ini")
            assert stigmer_events[0].event_id == "evt-1"

        @pytest.mark.stigmer_deterministic(False)
        def test_off(stigmer_events):
            ingest([], execution_id="wf-ini")
            assert stigmer_events[0].event_id != "evt-1"
        """
    )
    result = pytester.runpytest("--strict-markers", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
