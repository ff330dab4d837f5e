"""Temporal integration: one interceptor reports workflow runs and activities to Stigmer.

```python
from temporalio.client import Client
from otel_stigmer.contrib.temporal import StigmerInterceptor

client = await Client.connect("localhost:7233", interceptors=[StigmerInterceptor()])
```

Each workflow run becomes a Stigmer workflow (execution id = the workflow id unless
configured otherwise) and each activity a task named after its activity type;
:class:`ClosedRunWatcher` reports runs that were terminated or timed out.
Install with ``pip install 'otel-stigmer[temporal]'``.

The names are imported on first use, so ``otel_stigmer`` itself can ask whether it runs
in a workflow sandbox without importing temporalio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otel_stigmer.contrib.temporal._identity import (
        ExecutionIdContext,
        ExecutionIdResolver,
        from_memo,
        from_search_attribute,
        from_workflow_id,
    )
    from otel_stigmer.contrib.temporal._interceptor import StigmerInterceptor
    from otel_stigmer.contrib.temporal._sandbox import in_workflow_sandbox
    from otel_stigmer.contrib.temporal._watch import ClosedRunWatcher

__all__ = [
    "ClosedRunWatcher",
    "ExecutionIdContext",
    "ExecutionIdResolver",
    "StigmerInterceptor",
    "from_memo",
    "from_search_attribute",
    "from_workflow_id",
    "in_workflow_sandbox",
]

_MODULES = {
    "ClosedRunWatcher": "_watch",
    "ExecutionIdContext": "_identity",
    "ExecutionIdResolver": "_identity",
    "StigmerInterceptor": "_interceptor",
    "from_memo": "_identity",
    "from_search_attribute": "_identity",
    "from_workflow_id": "_identity",
    "in_workflow_sandbox": "_sandbox",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
