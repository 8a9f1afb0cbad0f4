"""ocr-origin: the Flask origin behind nginx. `create_app(settings)` builds everything once."""
from __future__ import annotations

import logging
import time

from flask import Flask

from cache.index import RedisResultIndex
from cache.store import ResultStore, from_url

from . import errors, limits, logs, metrics, security
from .jobs import RecognitionQueue, connect
from .service import OcrService, RedisIndex, Recognizer, identity_of
from .settings import Settings

logger = logging.getLogger(__name__)


def load_predictor(settings: Settings) -> Recognizer:
    """Load the recognizer once per queue worker process and record how long it took."""
    from ocr_core import Predictor

    t0 = time.perf_counter()
    detector = settings.detector_path or True
    if str(detector).lower() == "off":
        detector = False
    predictor = Predictor.load(settings.model_path, threads=settings.torch_threads,
                               engine=settings.recognizer_engine, detector=detector,
                               precision=settings.recognizer_precision)
    elapsed = time.perf_counter() - t0
    metrics.MODEL_LOAD.set(elapsed)
    logger.info("model loaded name=%s version=%s seconds=%.2f", predictor.model_name,
                predictor.model_version, elapsed)
    predictor.warm_up()  # the first upload of each worker would otherwise be ~150 ms slower
    return predictor


def create_app(settings: Settings, *, predictor: Recognizer | None = None,
               index: RedisIndex | None = None, store: ResultStore | None = None) -> Flask:
    """Build the app and its services once; tests inject `predictor`, `index` and `store`.

    Services left as None are built from `settings` (an empty `redis_url` means no index and no
    queue). The web tier never loads the model: recognition runs in queue workers
    (`ocr-origin worker`). Given a `predictor`, this process runs the jobs itself, synchronously
    inside the upload request (RQ's is_async=False on the same Redis): for tests and debugging.
    """
    # No Flask static route: origin.web serves content-hashed assets itself.
    app = Flask(__name__, static_folder=None)
    # Multipart framing adds a little to the image itself, base64 in a JSON upload a third; the
    # image limit itself is enforced in the view.
    from .views import json_body_limit
    app.config["MAX_CONTENT_LENGTH"] = json_body_limit(settings.max_upload_bytes)
    app.config["JSON_AS_ASCII"] = False
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    if store is None:
        store = from_url(settings.storage_url, endpoint_url=settings.s3_endpoint_url)
    if index is None:
        index = (RedisResultIndex.from_url(settings.redis_url, radius=settings.hamming_distance)
                 if settings.redis_url else None)
        if index is None:
            logger.warning("OCR_REDIS_URL is empty: dedup is off and new images cannot be recognised")
    queue = None
    if settings.redis_url:
        # Reads block for up to OCR_SYNC_WAIT_S while an upload waits for its job.
        connection = connect(settings.redis_url, read_timeout_s=settings.sync_wait_s + 5)
        queue = RecognitionQueue(connection, settings.queue_name, is_async=predictor is None,
                                 retries=settings.job_retries)
    identity = None
    if predictor is not None:
        from .worker import Recognition, install

        install(Recognition(settings, predictor=predictor, store=store, index=index))
        identity = identity_of(predictor)
    app.extensions["ocr"] = OcrService(settings, store=store, index=index, queue=queue, identity=identity)
    logger.info("origin ready store=%r index=%r queue=%r", store, index, queue)
    app.extensions["ocr_gate"] = limits.build_gate(settings, index)
    logger.info("upload gate %r", app.extensions["ocr_gate"])
    logs.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    from . import web
    from .views import bp
    app.register_blueprint(bp)
    web.init_app(app)
    return app
