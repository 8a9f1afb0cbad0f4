"""Origin fixtures: an app per test with a counting predictor, file or S3 storage and real Redis."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from origin import create_app
from origin.settings import Settings

WEIGHTS = Path(__file__).resolve().parents[3] / "ocr_core" / "weights" / "crnn.pt"
SECRET = b"unit-test-secret-0123456789abcdef"


class _StandInResult:
    """Shape of ocr_core's result, used only while the shipped weights do not exist yet."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.elapsed_ms = 1.0
        self.lines = []

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "lines": [{"text": self.text, "confidence": 0.5, "box": [0, 0, 1, 1],
                                              "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
                "elapsed_ms": self.elapsed_ms}


class _StandInPredictor:
    """Test-local stand-in with Predictor's methods (temporary: see `real_predictor`)."""
    model_name = "stand-in"
    model_version = "0"

    def read(self, image: Any, *, single_line: bool = False) -> _StandInResult:
        return _StandInResult(f"{image.size[0]}x{image.size[1]}")


class CountingPredictor:
    """Wraps a predictor and counts inferences, to prove a HIT runs none."""

    def __init__(self, inner: Any, *, delay: float = 0.0) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.model_version = inner.model_version
        self.calls = 0
        self.delay = delay
        self._lock = threading.Lock()

    def read(self, image: Any, *, single_line: bool = False) -> Any:
        with self._lock:
            self.calls += 1
        if self.delay:
            import time
            time.sleep(self.delay)  # widen the race window in single-flight tests
        return self.inner.read(image, single_line=single_line)


@pytest.fixture(scope="session")
def real_predictor() -> Any:
    """The real ocr_core Predictor once its shipped weights exist; the stand-in until then."""
    if WEIGHTS.exists():
        from ocr_core import Predictor

        return Predictor.load(None, threads=1)
    return _StandInPredictor()


@pytest.fixture
def predictor(real_predictor: Any) -> CountingPredictor:
    return CountingPredictor(real_predictor)


@pytest.fixture
def settings(tmp_path: Path, redis_url: str) -> Settings:
    return Settings(secret=SECRET, redis_url=redis_url, storage_url=f"file://{tmp_path / 'results'}",
                    max_upload_bytes=2 * 1024 * 1024, max_pixels=4_000_000)


@pytest.fixture
def app(settings: Settings, predictor: CountingPredictor):
    app = create_app(settings, predictor=predictor)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def app_factory(settings: Settings, predictor: CountingPredictor):
    """Build an app whose settings differ from the `settings` fixture by `overrides`."""
    import dataclasses

    def make(**overrides: Any):
        app = create_app(dataclasses.replace(settings, **overrides), predictor=predictor)
        app.config["TESTING"] = True
        return app

    return make


@pytest.fixture(autouse=True)
def _close_redis_clients(monkeypatch: pytest.MonkeyPatch):
    """Disconnect every Redis client an app made during the test. Apps keep their pool for the
    process lifetime; left to the garbage collector, a pooled socket may be freed before its
    connection closes it, which is a ResourceWarning (an error in this suite)."""
    import cache.index

    made: list[Any] = []
    real = cache.index.make_client

    def tracking(url: str):
        made.append(real(url))
        return made[-1]

    monkeypatch.setattr(cache.index, "make_client", tracking)
    yield
    for client in made:
        client.connection_pool.disconnect()
