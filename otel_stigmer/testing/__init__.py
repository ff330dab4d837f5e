"""Test kit: a real receiver to test against, and TLS certificates for it.

Importing this package does not import pytest.
"""

from __future__ import annotations

from otel_stigmer.testing._capture import EventList, ProgressCapture, capture_progress
from otel_stigmer.testing._certs import TestCertificates, make_test_certificates
from otel_stigmer.testing._server import StigmerTestServer

__all__ = [
    "EventList",
    "ProgressCapture",
    "StigmerTestServer",
    "TestCertificates",
    "capture_progress",
    "make_test_certificates",
]
