"""The origin with recognition inside the request, as before the queue: the baseline that
bench/queue_bench.py compares the queue's MISS latency with (same code, same model, same
storage and index; only the queue is missing).

    gunicorn -c deploy/gunicorn.conf.py bench.inline_origin:app --workers 1

Each upload that needs recognition runs `Recognition.run` in the request's thread, where the
queue would have enqueued a job and waited for it. That run decodes and fingerprints the upload
once more to check its key (~1 ms for a one-line image, docs/benchmarks.md), a cost the code
before the queue did not have: the baseline is that much slower, never faster, than it was.
Bench only: never deployed.
"""
from __future__ import annotations

from typing import Any

from origin import create_app, load_predictor
from origin.jobs import JobState, ModelIdentity
from origin.logs import configure_logging
from origin.settings import Settings
from origin.worker import Recognition


class InlineQueue:
    """What OcrService asks of its queue, answered by recognising at once in this process."""

    def __init__(self, recognition: Recognition) -> None:
        self.recognition = recognition

    def identity(self) -> ModelIdentity:
        return self.recognition.identity

    def submit(self, key: str, *, args: tuple[Any, ...], timeout: int) -> bool:
        self.recognition.run(key, *args)
        return True

    def wait(self, key: str, timeout: float, *, created: bool = False) -> JobState:
        return JobState("done")


def build() -> Any:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    predictor = load_predictor(settings)
    app = create_app(settings)
    service = app.extensions["ocr"]
    recognition = Recognition(settings, predictor=predictor, store=service.store, index=service.index.inner)
    service.queue = InlineQueue(recognition)
    return app


app = build()
