"""Quickstart: an order workflow reported to Stigmer with nothing but ``@workflow`` and ``@task``.

Run it with ``python examples/quickstart.py``. With ``STIGMER_SERVICE_ENDPOINT`` (and
``STIGMER_SERVICE_API_KEY``) set, progress goes to that Stigmer Service; otherwise the example
starts the reference receiver in-process on a free loopback port and reports to it. Either
way it prints the timeline of progress events: the payment task fails once and is retried,
and the receipt task fails and is handled by the workflow.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

import otel_stigmer
from otel_stigmer.decorators import new_execution_id, task, workflow
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.testing import StigmerTestServer


class GatewayTimeoutError(ConnectionError):
    """The payment gateway did not answer in time."""


class MailboxFullError(RuntimeError):
    """The customer's mailbox refused the receipt."""


# --- business code: no Stigmer call anywhere below, only the decorators -------------------

_gateway_calls = 0


@task
def reserve_stock(items: Sequence[str]) -> list[str]:
    """Reserve every item in the warehouse."""
    return [f"reservation-{item}" for item in items]


@task(name="charge-card", retries=2, retry_on=ConnectionError, retry_delay=0.05)
def charge_card(order_id: str, amount_cents: int) -> str:
    """Charge the card; the gateway times out on the first try."""
    global _gateway_calls  # noqa: PLW0603 - simulates a flaky remote gateway
    _gateway_calls += 1
    if _gateway_calls == 1:
        raise GatewayTimeoutError("payment gateway timed out after 2s")
    return f"payment-{order_id}-{amount_cents}"


@task(name="send-receipt")
def send_receipt(email: str) -> None:
    """E-mail the receipt; this customer's mailbox is full."""
    raise MailboxFullError(f"mailbox of {email} is full")


@task
def ship(order_id: str, reservations: list[str]) -> str:
    """Hand the parcel to the carrier."""
    time.sleep(0.01)
    return f"parcel-{order_id}-{len(reservations)}"


@workflow(name="order-fulfilment")
def fulfil_order(order_id: str, items: Sequence[str], execution_id: str) -> str:
    """Reserve, charge, notify and ship one order."""
    reservations = reserve_stock(items)
    charge_card(order_id, 4_200)
    try:
        send_receipt("ada@example.com")
    except MailboxFullError:
        # A missing receipt does not stop the order; Stigmer still shows the failed task.
        print("receipt not sent; the order goes on")
    return ship(order_id, reservations)


# --- set-up and output --------------------------------------------------------------------


def render(events: Sequence[WorkflowProgressEvent]) -> str:
    """One line per event: time offset, type, task or workflow (with attempt), status, error."""
    if not events:
        return "(no events)"
    start = events[0].timestamp_ms
    lines = []
    for event in events:
        subject = event.task_name or event.workflow_name
        if event.attempt:
            subject += f" (attempt {event.attempt})"
        indent = "  " if event.task_name else ""
        line = f"+{event.timestamp_ms - start:>4}ms  {indent}{event.event_type:<{20 - len(indent)}}"
        line += f" {subject:<28} {event.status:<10}"
        if event.HasField("error"):
            line += f" {event.error.code}: {event.error.message}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def run(execution_id: str) -> None:
    """Run the workflow once."""
    parcel = fulfil_order("A-1001", ["keyboard", "mouse"], execution_id=execution_id)
    print(f"workflow {execution_id} returned {parcel}")


def main() -> int:
    """Report to STIGMER_SERVICE_ENDPOINT if set, else to an embedded receiver."""
    execution_id = new_execution_id()
    if os.environ.get("STIGMER_SERVICE_ENDPOINT"):
        pipeline = otel_stigmer.configure()  # STIGMER_SERVICE_* from the environment
        run(execution_id)
        delivered = pipeline.force_flush(10_000)
        print(f"reported to {os.environ['STIGMER_SERVICE_ENDPOINT']} (all delivered: {delivered})")
        pipeline.shutdown(5_000)
        return 0 if delivered else 1

    with StigmerTestServer(api_key="quickstart-key") as server:
        config = otel_stigmer.StigmerConfig(
            endpoint=server.endpoint, api_key=server.api_key, use_tls=False
        )
        pipeline = otel_stigmer.configure(config)
        print(
            f"STIGMER_SERVICE_ENDPOINT unset: reporting to an embedded receiver ({server.endpoint})"
        )
        run(execution_id)
        pipeline.force_flush(10_000)
        events = server.wait_for_events(
            lambda evs: any(e.event_type == "workflow_completed" for e in evs),
            execution_id=execution_id,
            timeout=30,
        )
        pipeline.shutdown(5_000)
    print(f"\ntimeline of {execution_id} as stored by the receiver:")
    print(render(events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
