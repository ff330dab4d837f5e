"""``python -m otel_stigmer.demo.workflow``: the demo's order-ingest workflow, in its own process.

It reports to the receiver named by the ``STIGMER_SERVICE_*`` variables, set by
``otel-stigmer demo``. The business functions below use only ``@workflow`` and ``@task``
(plus one ordinary OpenTelemetry span event for progress). The failures are scripted, so
every run shows the same story: one task fails once and is retried, one task fails and
the workflow handles it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from opentelemetry import trace

import otel_stigmer
from otel_stigmer.decorators import task, workflow

__all__ = ["TASKS", "WORKFLOW_NAME", "ingest_orders", "main"]

WORKFLOW_NAME = "ingest-orders"
#: The tasks of one run, in order.
TASKS = ("fetch-orders", "check-inventory", "enrich-orders", "send-notifications", "publish-report")


class InventoryTimeoutError(ConnectionError):
    """The inventory service did not answer in time."""


class NotificationQuotaError(RuntimeError):
    """The mail provider refused more messages today."""


class _Pace:
    """Seconds each simulated step works; set from ``--pace``."""

    seconds = 0.4


_inventory_calls = 0


@task(name="fetch-orders")
def fetch_orders(day: str) -> list[str]:
    """Read the day's orders."""
    time.sleep(_Pace.seconds)
    return [f"{day}-order-{n}" for n in range(1, 7)]


@task(name="check-inventory", retries=1, retry_on=ConnectionError, retry_delay=0.1)
def check_inventory(orders: list[str]) -> dict[str, bool]:
    """Ask the inventory service about every order; the first call times out."""
    global _inventory_calls  # noqa: PLW0603 - simulates a flaky remote service
    _inventory_calls += 1
    time.sleep(_Pace.seconds / 2)
    if _inventory_calls == 1:
        # An explicit error code, as the Stigmer UI shows it; without it, the exception type.
        trace.get_current_span().set_attribute("stigmer.error.code", "INVENTORY_TIMEOUT")
        raise InventoryTimeoutError("inventory service did not answer within 2s")
    return dict.fromkeys(orders, True)


@task(name="enrich-orders")
def enrich_orders(orders: list[str]) -> list[str]:
    """Add customer data, reporting progress half-way."""
    half = len(orders) // 2
    time.sleep(_Pace.seconds / 2)
    trace.get_current_span().add_event(
        "progress",
        {"stigmer.progress": 50, "stigmer.message": f"{half} of {len(orders)} orders enriched"},
    )
    time.sleep(_Pace.seconds / 2)
    return [f"{order}+customer" for order in orders]


@task(name="send-notifications")
def send_notifications(orders: list[str]) -> None:
    """E-mail every customer; the provider's daily quota is used up."""
    time.sleep(_Pace.seconds / 4)
    trace.get_current_span().set_attribute("stigmer.error.code", "NOTIFICATION_QUOTA")
    raise NotificationQuotaError(
        f"daily e-mail quota reached; {len(orders)} notifications deferred"
    )


@task(name="publish-report")
def publish_report(orders: list[str]) -> str:
    """Publish the day's report."""
    time.sleep(_Pace.seconds)
    return f"report with {len(orders)} orders"


@workflow(name=WORKFLOW_NAME, attributes={"stigmer.metadata.tasks_planned": len(TASKS)})
def ingest_orders(day: str, execution_id: str) -> str:
    """Fetch, check, enrich, notify and report; a notification failure does not stop the run."""
    orders = fetch_orders(day)
    check_inventory(orders)
    enriched = enrich_orders(orders)
    # Customers are notified tomorrow; the report matters more.
    with contextlib.suppress(NotificationQuotaError):
        send_notifications(enriched)
    return publish_report(enriched)


def main(argv: list[str] | None = None) -> int:
    """Run the workflow once and deliver every event before exiting.

    Returns:
        0 when the workflow returned and every event was delivered, else 1.
    """
    parser = argparse.ArgumentParser(prog="python -m otel_stigmer.demo.workflow")
    parser.add_argument("--execution-id", required=True)
    parser.add_argument("--pace", type=float, default=_Pace.seconds)
    args = parser.parse_args(argv)
    _Pace.seconds = max(0.0, args.pace)
    pipeline = otel_stigmer.configure()
    try:
        ingest_orders("2026-01-01", execution_id=args.execution_id)
    finally:
        delivered = pipeline.force_flush(10_000)
        pipeline.shutdown(5_000)
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main())
