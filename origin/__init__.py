"""ocr-origin: the Flask origin behind nginx. `create_app(settings)` builds everything once."""
from __future__ import annotations

import logging
import time

from flask import Flask

from cache.index import RedisResultIndex
from cache.store import ResultStore, from_url

from . import errors, logs, metrics, security
from .service import OcrService, RedisIndex, Recognizer
from .settings import Settings

logger = logging.getLogger(__name__)


def load_predictor(settings: Settings) -> Recognizer:
    """Load the recognizer once per worker and record how long it took."""
    from ocr_core import Predictor

    t0 = time.perf_counter()
    detector = settings.detector_path or True
    if str(detector).lower() == "off":
        detector = False
    predictor = Predictor.load(settings.model_path, threads=settings.torch_threads, detector=detector)
    elapsed = time.perf_counter() - t0
    metrics.MODEL_LOAD.set(elapsed)
    logger.info("model loaded name=%s version=%s seconds=%.2f", predictor.model_name,
                predictor.model_version, elapsed)
    predictor.warm_up()  # the first upload of each worker would otherwise be ~150 ms slower
    return predictor


def create_app(settings: Settings, *, predictor: Recognizer | None = None,
               index: RedisIndex | None = None, store: ResultStore | None = None) -> Flask:
    """Build the app and its services once; tests inject `predictor`, `index` and `store`.

    Services left as None are built from `settings` (an empty `redis_url` means no index)."""
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
            logger.warning("OCR_REDIS_URL is empty: near-duplicate dedup and single flight are off")
    if predictor is None:
        predictor = load_predictor(settings)
    app.extensions["ocr"] = OcrService(settings, predictor=predictor, store=store, index=index)
    logger.info("origin ready store=%r index=%r namespace=%s", store, index,
                app.extensions["ocr"].namespace)
    logs.init_app(app)
    errors.init_app(app)
    security.init_app(app)
    from . import web
    from .views import bp
    app.register_blueprint(bp)
    web.init_app(app)
    return app
