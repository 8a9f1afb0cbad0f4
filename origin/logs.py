"""Logging with a request id on every record (from nginx's X-Request-Id, or generated)."""
from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, Response, g, has_request_context, request

_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
FORMAT = "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to records ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def configure_logging(level: str = "INFO") -> None:
    """Configure the root logger once (called by the WSGI entry point, not by create_app)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def init_app(app: Flask) -> None:
    """Take the request id from X-Request-Id (if well-formed) or make one; echo it back."""

    @app.before_request
    def _request_id() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if _REQUEST_ID_RE.fullmatch(incoming) else uuid.uuid4().hex

    @app.after_request
    def _echo(resp: Response) -> Response:
        if "request_id" in g:
            resp.headers["X-Request-Id"] = g.request_id
        return resp
