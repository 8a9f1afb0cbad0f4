"""nginx's own 413 says the upload limit in words: the value render.py and docker-compose give it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from origin.units import human_bytes
from tests.servers import load_nginx_render

ROOT = Path(__file__).resolve().parents[3]


def test_render_derives_the_words_from_the_byte_limit() -> None:
    values = load_nginx_render().values_for(Path("/tmp/x"), max_upload_bytes=3 * 1024 * 1024)
    assert values["OCR_MAX_UPLOAD_HUMAN"] == "3 MiB"


def test_compose_default_says_the_default_byte_limit() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["services"]["nginx"]["environment"]
    default_bytes = int(env["OCR_MAX_UPLOAD_BYTES"].split(":-")[1].rstrip("}"))
    assert env["OCR_MAX_UPLOAD_HUMAN"].split(":-")[1].rstrip("}") == human_bytes(default_bytes)
