"""Reading a server's RetryInfo trailer from a failed call (pure unit tests)."""

from __future__ import annotations

import grpc
from google.protobuf.duration_pb2 import Duration

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1.progress_pb2 import RetryInfo
from otel_stigmer._wire import RETRY_INFO_TRAILER
from otel_stigmer._wire import retry_delay as _retry_delay


class _FakeError(grpc.RpcError):
    """Stands in for a failed call: only the trailing metadata matters here."""

    def __init__(self, trailers: tuple[tuple[str, str | bytes], ...] | None) -> None:
        self._trailers = trailers

    # The stubs type trailers as _Metadatum tuples; plain pairs are what grpc hands back.
    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...] | None:  # type: ignore[override]
        return self._trailers


def _info(seconds: int, nanos: int = 0) -> bytes:
    return RetryInfo(retry_delay=Duration(seconds=seconds, nanos=nanos)).SerializeToString()


def test_retry_info_is_read() -> None:
    """A RetryInfo trailer gives its delay in seconds."""
    error = _FakeError((("other", "x"), (RETRY_INFO_TRAILER, _info(1, 500_000_000))))
    assert _retry_delay(error) == 1.5


def test_missing_or_zero_retry_info_is_none() -> None:
    """No trailer, no metadata at all, or a zero delay give None."""
    assert _retry_delay(_FakeError(())) is None
    assert _retry_delay(_FakeError(None)) is None
    assert _retry_delay(_FakeError(((RETRY_INFO_TRAILER, _info(0)),))) is None


def test_malformed_retry_info_is_ignored() -> None:
    """Garbage in the trailer is ignored rather than hiding the real failure."""
    assert _retry_delay(_FakeError(((RETRY_INFO_TRAILER, b"\xff\xff\xff"),))) is None
    assert _retry_delay(grpc.RpcError()) is None
