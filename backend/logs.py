"""Structured logs: one JSON line per event, in the shape Cloud Logging reads from stdout.

``severity`` and ``message`` are the keys Cloud Logging lifts; everything else lands in
``jsonPayload``. Decimals are written as strings so no float ever appears in an audit line.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, TextIO

_stream: TextIO | None = None


def set_stream(stream: TextIO | None) -> None:
    """Redirect log lines (tests capture them); None restores stdout."""
    global _stream
    _stream = stream


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def log_event(event: str, severity: str = "INFO", **fields: Any) -> dict[str, Any]:
    record = {"severity": severity, "message": event, "event": event,
              "time": datetime.now(timezone.utc).isoformat(), **fields}
    line = json.dumps(record, default=_default, separators=(",", ":"), sort_keys=False)
    stream = _stream or sys.stdout
    stream.write(line + "\n")
    stream.flush()
    return record
