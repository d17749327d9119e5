"""Logging: one line per event of interest, readable text by default or JSON lines with
TRUNKPLANE_LOG_FORMAT=json. Every line written while serving a call carries its request id
and actor. Nothing logs settings, so no secret can reach a log line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from domain.text import one_line
from infra.grpc_api.context import current

TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class CallFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        call = current()
        record.request_id = call.request_id or "-"
        record.actor = call.actor
        return True


class TextFormatter(logging.Formatter):
    """Line breaks and other controls in a message are escaped: text from a request or
    from the wire cannot start a line of its own (a forged log line)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = one_line(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "actor": getattr(record, "actor", ""),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
