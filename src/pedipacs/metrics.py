"""Prometheus metrics shared by every part of a node (multi-process aware when configured)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INSTANCES_RECEIVED = Counter(
    "pedipacs_instances_received",
    "DICOM objects received, by door and outcome",
    ["door", "outcome"],
)
BYTES_STORED = Counter("pedipacs_bytes_stored", "Bytes written to the blob store")
INGEST_ERRORS = Counter("pedipacs_ingest_errors", "Objects refused, by error type", ["error"])
INGEST_SECONDS = Histogram(
    "pedipacs_ingest_seconds",
    "Time to parse, store and index one object",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUERY_SECONDS = Histogram(
    "pedipacs_query_seconds",
    "Time to answer one query, by level",
    ["level"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ASSOCIATIONS = Counter("pedipacs_dicom_associations", "DICOM associations, by outcome", ["outcome"])
ACTIVE_ASSOCIATIONS = Gauge(
    "pedipacs_dicom_active_associations",
    "DICOM associations open now",
    multiprocess_mode="livesum",
)
DIMSE_REQUESTS = Counter(
    "pedipacs_dimse_requests",
    "DIMSE requests handled, by service and status class",
    ["service", "status"],
)
