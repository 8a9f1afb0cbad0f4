"""The queue path with RQ's real worker loop (burst mode, in this process) on the real Redis:
an origin that loads no model, jobs keyed by content, 202 + /jobs/<key>, sync waits."""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from origin import create_app
from origin.jobs import RecognitionQueue, connect
from origin.service import identity_of
from origin.worker import Recognition, _worker_class, install

from .helpers import page, png, upload


@pytest.fixture
def web(settings, predictor):
    """An origin without a model (as under gunicorn) plus what a worker process would hold."""
    app = create_app(replace(settings, sync_wait_s=0.3))
    app.config["TESTING"] = True
    svc = app.extensions["ocr"]
    recognition = Recognition(settings, predictor=predictor, store=svc.store, index=svc.index)
    return app, svc, recognition


def run_worker_burst(settings, recognition: Recognition) -> None:
    """RQ's SimpleWorker loop until the queue is empty (main thread: RQ's job timeouts use SIGALRM)."""
    install(recognition)
    connection = connect(settings.redis_url, read_timeout_s=10)
    queue = RecognitionQueue(connection, settings.queue_name)
    queue.announce(recognition.identity)
    worker = _worker_class()([queue.queue], connection=connection)
    assert worker.work(burst=True)


def test_no_worker_registered_is_a_clean_503(web) -> None:
    app, svc, _ = web
    resp = upload(app.test_client(), png())
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "queue_unavailable"
    assert resp.headers["Retry-After"]
    assert app.test_client().get("/readyz").get_json()["checks"]["model"].startswith("waiting")


def test_async_upload_202_job_then_result(web, settings, predictor) -> None:
    app, svc, recognition = web
    svc.queue.announce(recognition.identity)
    client = app.test_client()
    data = png(page("Queued invoice 2026-0042"))
    resp = upload(client, data, headers={"Prefer": "respond-async"})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["Retry-After"] == "1"
    location = resp.headers["Location"]
    key = location.rsplit("/", 1)[1]
    assert location == f"/jobs/{key}" and key.startswith(recognition.identity.namespace)
    state = client.get(location)
    assert state.status_code == 200 and state.headers["Cache-Control"] == "no-store"
    assert state.get_json() == {"key": key, "status": "queued", "position": 0, "error": None}
    # the same content again joins the job instead of queueing a second one
    assert upload(client, data, headers={"Prefer": "respond-async"}).headers["Location"] == location
    assert svc.queue.queue.count == 1
    assert predictor.calls == 0  # the origin never ran the model

    run_worker_burst(settings, recognition)
    assert predictor.calls == 1
    done = client.get(location)
    assert done.status_code == 303 and done.headers["Location"] == f"/results/{key}"
    body = client.get(f"/results/{key}").get_json()
    assert body["key"] == key and body["model"]["namespace"] == recognition.identity.namespace
    again = upload(client, data)
    assert again.status_code == 303 and again.headers["X-OCR-Cache"] == "HIT"


def test_sync_wait_times_out_into_202(web) -> None:
    app, svc, recognition = web
    svc.queue.announce(recognition.identity)
    t0 = time.monotonic()
    resp = upload(app.test_client(), png(page("Nobody is working 2026-0042")))
    assert resp.status_code == 202 and resp.headers["Location"].startswith("/jobs/")
    assert 0.25 <= time.monotonic() - t0 < 5  # waited OCR_SYNC_WAIT_S (0.3 s), not longer


def test_sync_wait_wakes_when_a_worker_finishes(web, settings, predictor) -> None:
    """An upload that waits gets 303 MISS as soon as the job is done elsewhere."""
    app, svc, recognition = web
    app.extensions["ocr"].settings = replace(svc.settings, sync_wait_s=20.0)
    svc.queue.announce(recognition.identity)
    data = png(page("Waiting for a worker 2026-0042"))
    answers: list = []
    thread = threading.Thread(target=lambda: answers.append(upload(app.test_client(), data)))
    thread.start()
    deadline = time.monotonic() + 10
    while svc.queue.queue.count == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    run_worker_burst(settings, recognition)
    thread.join(20)
    assert answers and answers[0].status_code == 303 and answers[0].headers["X-OCR-Cache"] == "MISS"
    assert predictor.calls == 1


def test_job_and_key_validation(web) -> None:
    app, svc, recognition = web
    client = app.test_client()
    assert client.get("/jobs/not-a-key").status_code == 400
    unknown = client.get("/jobs/" + "a" * 32)
    assert unknown.status_code == 404 and unknown.get_json()["error"]["code"] == "not_found"


def test_worker_refuses_a_job_of_another_model(web, settings, predictor) -> None:
    """During a rollout a worker never stores its text under another model's key."""
    app, svc, recognition = web
    svc.queue.announce(replace(recognition.identity, namespace="zzzz", version="other"))
    resp = upload(app.test_client(), png(page("Rollout 2026-0042")), headers={"Prefer": "respond-async"})
    location = resp.headers["Location"]
    run_worker_burst(settings, recognition)
    state = app.test_client().get(location).get_json()
    assert state["status"] == "failed" and "model" in state["error"]
    assert predictor.calls == 0


def test_identity_comes_from_the_workers(settings, predictor) -> None:
    queue = RecognitionQueue(connect(settings.redis_url, read_timeout_s=5), settings.queue_name)
    assert queue.identity() is None
    queue.announce(identity_of(predictor))
    fresh = RecognitionQueue(connect(settings.redis_url, read_timeout_s=5), settings.queue_name)
    assert fresh.identity() == identity_of(predictor)


def test_metrics_report_the_queue(web, settings) -> None:
    app, svc, recognition = web
    svc.queue.announce(recognition.identity)
    client = app.test_client()
    for n in range(3):
        assert upload(client, png(page(f"Metrics {n}")), headers={"Prefer": "respond-async"}).status_code == 202
    text = client.get("/metrics").get_data(as_text=True)
    assert "ocr_queue_length 3.0" in text
    assert 'ocr_jobs{state="queued"} 3.0' in text and 'ocr_jobs{state="running"} 0.0' in text
    assert "ocr_queue_workers 0.0" in text
    run_worker_burst(settings, recognition)
    text = client.get("/metrics").get_data(as_text=True)
    assert "ocr_queue_length 0.0" in text
    assert 'ocr_job_seconds_count{outcome="ok"}' in text  # this process ran the worker loop


def test_worker_wakes_waiters_with_a_done_notice_the_moment_the_result_is_stored(web, settings) -> None:
    """The done notice alone wakes a waiting upload (no polling, no need for RQ's own record of
    the job's success), and the worker writes it once result.json exists, with a TTL."""
    app, svc, recognition = web
    svc.queue.announce(recognition.identity)
    data = png(page("Done notice 2026-0042"))
    resp = upload(app.test_client(), data, headers={"Prefer": "respond-async"})
    key = resp.headers["Location"].rsplit("/", 1)[1]
    answers: list = []
    waiter = threading.Thread(target=lambda: answers.append(svc.queue.wait(key, 20.0, created=True)))
    t0 = time.monotonic()
    waiter.start()
    time.sleep(0.2)
    assert not answers  # nothing happened yet: still waiting
    svc.queue.notify_done(key)  # what the worker sends (the job itself is still queued)
    waiter.join(5)
    assert answers and answers[0].status == "done" and time.monotonic() - t0 < 3

    seen: list[bool] = []
    notice = f"ocr:v2:done:{key}"
    stored_before = lambda k: seen.append(svc.results.exists(k, "result.json"))  # noqa: E731
    svc.queue.connection.delete(notice)
    recognition.run(key, recognition.identity.namespace, data, stored=stored_before)
    assert seen == [True]  # called once, after result.json was written
    run_worker_burst(settings, recognition)  # the job as RQ runs it: the worker sends the notice
    assert svc.queue.connection.xlen(notice) == 1 and 0 < svc.queue.connection.ttl(notice) <= 90


def test_worker_indexes_the_origins_phash_but_checks_the_key_itself(web, settings) -> None:
    """The pHash travels with the job (not computed twice); the key never comes on trust."""
    app, svc, recognition = web
    svc.queue.announce(recognition.identity)
    data = png(page("Hand-over 2026-0042"))
    resp = upload(app.test_client(), data, headers={"Prefer": "respond-async"})
    key = resp.headers["Location"].rsplit("/", 1)[1]
    job_args = svc.queue._fetch(key).args
    from cache.fingerprint import fingerprint
    from origin.images import decode_image
    fp = fingerprint(decode_image(data, max_pixels=settings.max_pixels).image, data)
    assert job_args[3] == fp.phash_hex
    with pytest.raises(ValueError, match="whose key is"):  # another image under this job's key
        recognition.run(key, recognition.identity.namespace, png(page("Another page 2026-0042")),
                        phash=fp.phash_hex)
    run_worker_burst(settings, recognition)
    body = app.test_client().get(f"/results/{key}").get_json()
    assert body["phash"] == fp.phash_hex and body["pixel_sha256"] == fp.pixel_digest


def test_fine_hash_travels_with_the_job_and_older_jobs_still_get_one(web, settings, monkeypatch) -> None:
    """The 576-bit fine hash (~18 ms on an A4 page) is computed once, by the origin, and indexed
    by the worker as sent; a job from an older origin (no fine hash) has it computed."""
    import importlib

    from cache import redis_keys

    fingerprints = importlib.import_module("cache.fingerprint")  # `cache.fingerprint` is also a function

    app, svc, recognition = web
    svc.queue.announce(recognition.identity)
    data = png(page("Fine hash hand-over 2026-0042"))
    resp = upload(app.test_client(), data, headers={"Prefer": "respond-async"})
    key = resp.headers["Location"].rsplit("/", 1)[1]
    namespace = recognition.identity.namespace
    job_args = svc.queue._fetch(key).args
    from origin.images import decode_image
    origin_fine = fingerprints.fine_hash(decode_image(data, max_pixels=settings.max_pixels).image)
    assert job_args[4] == origin_fine.hex()

    computed: list[int] = []
    real = fingerprints.fine_hash
    monkeypatch.setattr(fingerprints, "fine_hash", lambda image: computed.append(1) or real(image))
    run_worker_burst(settings, recognition)
    assert computed == []  # the worker used the job's
    stored = svc.queue.connection.hget(redis_keys.fine_hashes(namespace), key)
    assert stored == origin_fine

    # a job enqueued by an older origin: four arguments, no fine hash
    old = png(page("Older origin 2026-0042"))
    old_key = svc.keys.derive(namespace, fingerprints.fingerprint(
        decode_image(old, max_pixels=settings.max_pixels).image, old).pixel_digest)
    computed.clear()
    svc.queue.submit(old_key, args=(namespace, old, "image", None), timeout=60)
    run_worker_burst(settings, recognition)
    assert computed == [1]
    assert svc.queue.connection.hget(redis_keys.fine_hashes(namespace), old_key) == real(
        decode_image(old, max_pixels=settings.max_pixels).image)


def test_bytes_are_remembered_before_the_wait_and_a_repeat_joins_the_job_undecoded(web, settings, predictor,
                                                                                  monkeypatch) -> None:
    """The bytes entry is written once the job exists, not after the sync wait: identical bytes
    sent meanwhile join the job without being decoded, and both answers come from one recognition."""
    import hashlib

    from cache import redis_keys
    from origin import service as service_module

    app, svc, recognition = web
    app.extensions["ocr"].settings = replace(svc.settings, sync_wait_s=20.0)
    svc.queue.announce(recognition.identity)
    data = png(page("Remembered before the wait 2026-0042"))
    entry = redis_keys.upload_bytes(recognition.identity.namespace, hashlib.sha256(data).hexdigest())
    answers: dict[str, object] = {}
    first = threading.Thread(target=lambda: answers.update(first=upload(app.test_client(), data)))
    first.start()
    deadline = time.monotonic() + 10
    while svc.queue.queue.count == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    while svc.queue.connection.get(entry) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    key = svc.queue.queue.job_ids[0]
    assert svc.queue.connection.get(entry) == f"exact:{key}".encode()
    assert first.is_alive()  # recorded while the first upload still waits for its job

    decodes: list[int] = []
    real_decode = service_module.decode_image
    monkeypatch.setattr(service_module, "decode_image", lambda *a, **kw: decodes.append(1) or real_decode(*a, **kw))
    second = threading.Thread(target=lambda: answers.update(second=upload(app.test_client(), data)))
    second.start()
    time.sleep(0.5)
    assert second.is_alive() and decodes == []  # waiting on the same job, undecoded
    run_worker_burst(settings, recognition)
    first.join(20)
    second.join(20)
    one, two = answers["first"], answers["second"]
    assert one.status_code == two.status_code == 303  # type: ignore[attr-defined]
    assert one.headers["X-OCR-Cache"] == "MISS" and two.headers["X-OCR-Match"] == "waited"  # type: ignore[attr-defined]
    assert one.headers["Location"] == two.headers["Location"] == f"/results/{key}"  # type: ignore[attr-defined]
    assert decodes == [] and predictor.calls == 1


def test_job_heartbeat_beats_the_running_job_only(monkeypatch) -> None:
    """One thread for the worker's life beats whichever job runs, and never a finished one
    (RQ would then find it 'abandoned' and fail it)."""
    from origin import worker

    monkeypatch.setattr(worker, "HEARTBEAT_EVERY_S", 0.05)
    beats: list[str] = []
    heart = worker.JobHeartbeat(lambda job, execution: beats.append(job))
    heart.begin("job-1", None)
    time.sleep(0.4)
    heart.end()
    first = len(beats)
    assert first >= 3 and set(beats) == {"job-1"}
    time.sleep(0.3)
    assert len(beats) == first  # nothing after end()
    thread = heart._thread
    heart.begin("job-2", None)
    time.sleep(0.3)
    heart.end()
    assert "job-2" in beats[first:] and set(beats[first:]) == {"job-2"}
    assert heart._thread is thread  # the same thread, not one per job


def test_a_job_over_its_time_limit_fails_with_a_readable_reason(web, settings, predictor, monkeypatch) -> None:
    """The limit grows with the pixels (capped); a job past it fails, and says why."""
    limits = replace(settings, job_timeout_min_s=60, job_seconds_per_mpx=10.0, job_timeout_max_s=600)
    assert limits.job_timeout(0) == 60 and limits.job_timeout(6300 * 6300) == 456
    assert limits.job_timeout(10**9) == 600
    app, svc, recognition = web
    svc.queue.announce(recognition.identity)
    monkeypatch.setattr(svc, "settings", replace(svc.settings, job_timeout_min_s=1, job_seconds_per_mpx=0.0,
                                                 job_timeout_max_s=1))
    monkeypatch.setattr(predictor, "delay", 2.5)
    client = app.test_client()
    location = upload(client, png(page("Too slow 2026-0042")), headers={"Prefer": "respond-async"}).headers["Location"]
    run_worker_burst(settings, recognition)
    state = client.get(location).get_json()
    assert state["status"] == "failed" and "longer than its limit of 1 s" in state["error"], state
