"""What the process sender's child is built from, as plain values (the first frame). Pure."""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc

from otel_stigmer.config import StigmerConfig
from otel_stigmer.retry import RetryPolicy

__all__ = ["config_fields", "config_from", "retry_policy_fields", "retry_policy_from"]


def config_fields(config: StigmerConfig) -> dict[str, Any]:
    """The constructor arguments of ``config``, the API key included (never log this)."""
    return {
        item.name: getattr(config, item.name) for item in dataclasses.fields(config) if item.init
    }


def config_from(fields: dict[str, Any]) -> StigmerConfig:
    """The config of :func:`config_fields`, for the child's own in-process sender."""
    return StigmerConfig(**{**fields, "sender": "thread"})


def retry_policy_fields(policy: RetryPolicy | None) -> dict[str, Any] | None:
    """``policy`` as plain values (status codes by name)."""
    if policy is None:
        return None
    fields = {item.name: getattr(policy, item.name) for item in dataclasses.fields(policy)}
    fields["retryable_codes"] = tuple(sorted(code.name for code in policy.retryable_codes))
    return fields


def retry_policy_from(fields: dict[str, Any] | None) -> RetryPolicy | None:
    """The :class:`RetryPolicy` of :func:`retry_policy_fields`."""
    if fields is None:
        return None
    codes = frozenset(grpc.StatusCode[name] for name in fields["retryable_codes"])
    return RetryPolicy(**{**fields, "retryable_codes": codes})
