"""``GET /api/status`` and ``GET /api/status/{id}``: the stored statuses as JSON.

Answers are computed here and written by the HTTP side, which only routes to
:func:`answer`. Each request reads the receiver's SQLite file through its own short-lived
:class:`StatusStore`, so the HTTP side needs no handle on the gRPC side.
"""

from __future__ import annotations

import os
import urllib.parse
from http import HTTPStatus
from typing import Any

from google.protobuf import json_format

from otel_stigmer.server.status_store import StatusStore
from otel_stigmer.status.wire import WorkflowExecutionStatus

__all__ = ["PREFIX", "answer", "status_to_json"]

#: Path of the list; one execution is ``PREFIX + "/" + quoted id``.
PREFIX = "/api/status"


def status_to_json(execution_id: str, status: WorkflowExecutionStatus) -> dict[str, Any]:
    """One status as a JSON-ready dict: ``execution_id`` and the proto3 JSON of the status.

    Field names are the proto's (``task_id``, ``started_at``, ...); enums are their names.
    """
    return {
        "execution_id": execution_id,
        "status": json_format.MessageToDict(status, preserving_proto_field_name=True),
    }


def answer(db_path: str | os.PathLike[str], path: str) -> tuple[HTTPStatus, object] | None:
    """The answer to a GET of ``path`` (no query string), or None when it is not ours.

    Args:
        db_path: The receiver's SQLite file.
        path: The request path.
    """
    if path != PREFIX and not path.startswith(PREFIX + "/"):
        return None
    execution_id = urllib.parse.unquote(path[len(PREFIX) + 1 :]) if path != PREFIX else None
    store = StatusStore(db_path)
    try:
        if execution_id is None:
            return HTTPStatus.OK, [status_to_json(eid, s) for eid, s in store.statuses().items()]
        status = store.status(execution_id)
    finally:
        store.close()
    if status is None:
        return HTTPStatus.NOT_FOUND, {"error": "no status for this execution"}
    return HTTPStatus.OK, status_to_json(execution_id, status)
