"""Benchmarks of the otel-stigmer pipeline against the standard OTel pipeline.

Run ``python -m benchmarks`` (``--quick`` for a short run). Receivers and every measured
pipeline run in processes of their own; the driver prints one table of ratios.
"""
