"""C-ECHO SCP: verification."""

from __future__ import annotations

from typing import Any

from pedipacs import metrics
from pedipacs.dimse.status import Status


def handle_c_echo(_event: Any) -> int:
    metrics.DIMSE_REQUESTS.labels("C-ECHO", "success").inc()
    return int(Status.SUCCESS)
