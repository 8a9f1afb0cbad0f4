"""WSGI entry point for gunicorn: `gunicorn origin.wsgi:app`."""
from __future__ import annotations

from . import create_app
from .logs import configure_logging
from .settings import Settings

settings = Settings.from_env()
configure_logging(settings.log_level)
app = create_app(settings)
