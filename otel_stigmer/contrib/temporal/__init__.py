"""Temporal integration: one interceptor reports workflow runs and activities to Stigmer.

```python
from temporalio.client import Client
from otel_stigmer.contrib.temporal import StigmerInterceptor

client = await Client.connect("localhost:7233", interceptors=[StigmerInterceptor()])
```

Each workflow run becomes a Stigmer workflow (execution id = the workflow id unless
configured otherwise) and each activity a task named after its activity type.
Install with ``pip install 'otel-stigmer[temporal]'``.
"""

from __future__ import annotations

from otel_stigmer.contrib.temporal._identity import (
    ExecutionIdContext,
    ExecutionIdResolver,
    from_memo,
    from_search_attribute,
    from_workflow_id,
)
from otel_stigmer.contrib.temporal._interceptor import StigmerInterceptor

__all__ = [
    "ExecutionIdContext",
    "ExecutionIdResolver",
    "StigmerInterceptor",
    "from_memo",
    "from_search_attribute",
    "from_workflow_id",
]
