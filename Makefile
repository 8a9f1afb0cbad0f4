# ocr-origin: two commands on a fresh Debian machine (as root, or with passwordless sudo).
#
#   make run    install what is missing, then serve on http://localhost:8080 in the foreground
#               (redis-server :6379, gunicorn :8000, nginx :8080); Ctrl-C or `make stop` stops all
#   make test   install what is missing (also test-only packages), `nginx -t`, then pytest
#
# Ports and settings come from the environment or the command line, e.g.
#   make run OCR_HTTP_PORT=8081 OCR_WORKERS=4
# (command-line variables reach the launcher's environment; see README "Configuration").

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The CPU wheel on this machine (pip finds it through /opt/wheels); a bare `torch` or a newer
# range would pull a CUDA build with several GB of nvidia wheels. deploy/constraints.txt pins it
# for every later install too.
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed

# check=package pairs for deploy/ensure-apt.sh (nothing happens when all are present).
APT_RUN := nginx='nginx-light|nginx' redis-server=redis-server
# Tests render text with DejaVu Sans; the cache tests' corpus (tests/unit/cache/corpus.py) also
# with Noto Sans CJK, WenQuanYi Micro Hei and Liberation. The browser tests drive Debian's chromium
# (never a browser downloaded by playwright). (`make bench` adds wrk.)
APT_FONTS := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf=fonts-dejavu-core \
	/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc=fonts-noto-cjk \
	/usr/share/fonts/truetype/wqy/wqy-microhei.ttc=fonts-wqy-microhei \
	/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf=fonts-liberation
APT_TEST := $(APT_FONTS) /usr/bin/chromium=chromium
# Training renders lines in every face `ocr_core/train/fonts.py` lists (CJK_FACES, LATIN_FACES):
# the test fonts plus these (fonts.py stops when one is missing: a face left out would change the
# training lines, and so the weights). No browser: training needs only the fonts.
APT_TRAIN := $(APT_FONTS) /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc=fonts-wqy-zenhei \
	/usr/share/fonts/truetype/arphic/ukai.ttc=fonts-arphic-ukai \
	/usr/share/fonts/truetype/arphic/uming.ttc=fonts-arphic-uming

.PHONY: help run test test-fast lint stop clean distclean deps apt-run apt-test apt-train nginx-check bench bench-deps bench-ocr evaluate weights

help:
	@sed -n '2,9p' Makefile | sed 's/^# \{0,1\}//'

apt-run:
	@deploy/ensure-apt.sh $(APT_RUN)

apt-test: apt-run
	@deploy/ensure-apt.sh $(APT_TEST)

apt-train:
	@deploy/ensure-apt.sh $(APT_TRAIN)

# Debian's own python3 creates venvs only with python3-venv installed (no ensurepip otherwise).
$(PY):
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); deploy/ensure-apt.sh python3-venv && $(PYTHON) -m venv $(VENV); }

# Reinstall the project when its metadata changes; torch first, from the local CPU wheel.
$(STAMP): pyproject.toml deploy/constraints.txt | $(PY)
	$(PY) -c 'import torch' 2>/dev/null || $(PIP) install --quiet '$(TORCH)'
	$(PIP) install --quiet -c deploy/constraints.txt -e '.[test,train]'
	@$(PY) -c 'import torch; assert "+cu" not in torch.__version__, torch.__version__' \
		|| { echo "a CUDA torch was installed; run 'make distclean' and retry" >&2; exit 1; }
	@touch $@

deps: apt-run $(STAMP)

run: deps
	$(PY) deploy/run.py

stop:
	@if [ -x $(PY) ]; then $(PY) deploy/run.py stop; else $(PYTHON) deploy/run.py stop; fi

# Render the nginx template into a scratch dir and let nginx check it (same flags as the tests).
nginx-check: apt-run
	@rm -rf var/nginx-check
	@$(PYTHON) deploy/nginx/render.py --out var/nginx-check/nginx.conf --log-dir var/nginx-check/log \
		--listen 127.0.0.1:8080 --check >/dev/null

test: apt-test $(STAMP) nginx-check lint
	$(PY) -m pytest

# Quick local loop: unit tests only, without the slow ones (fuzz run, verifier corpus) and the
# e2e tests that start redis/nginx/gunicorn/browsers. `make test` (CI) runs everything.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not slow" tests/unit

# ruff (pyflakes + pycodestyle) and mypy on every package; settings in pyproject.toml.
lint: $(STAMP)
	$(PY) -m ruff check origin cache deploy ocr_core
	$(PY) -m mypy origin cache ocr_core

# wrk gives the load figures; without it (no apt) the bench falls back to its Python client.
bench: deps
	@deploy/ensure-apt.sh wrk=wrk || echo "make bench: wrk not installed; using the Python client" >&2
	$(PY) bench/load_bench.py

# The recognizer's peers for bench/ocr_bench.py: Tesseract (tesserocr wheel + Debian traineddata)
# and RapidOCR 1.4.4 (`rapidocr_onnxruntime`) and 3.10.0 (`rapidocr`, PP-OCRv6), side by side.
# Both require opencv-python, which would shadow our headless OpenCV: they go in without
# dependencies, and their real needs are listed here.
bench-deps: deps
	@deploy/ensure-apt.sh /usr/share/tesseract-ocr/5/tessdata/chi_sim.traineddata=tesseract-ocr-chi-sim \
		/usr/share/tesseract-ocr/5/tessdata/eng.traineddata=tesseract-ocr-eng
	$(PIP) install --quiet -c deploy/constraints.txt tesserocr onnxruntime pyclipper shapely six pyyaml tqdm \
		omegaconf requests colorlog
	$(PIP) install --quiet --no-deps rapidocr-onnxruntime==1.4.4 rapidocr==3.10.0

EVAL ?= ../shared/eval

# Ours vs RapidOCR vs Tesseract on the dev sets, same run (figures: docs/benchmarks.md).
bench-ocr: bench-deps
	$(PY) bench/ocr_bench.py $(EVAL) --threads 2

# CER, line accuracy and latency per dev subset.
evaluate: deps
	$(PY) -m ocr_core.evaluate $(EVAL)

# Reproduce the shipped weights (fetch + convert PP-OCRv6, fonts, corpus, distil the BiLSTM, install).
weights: apt-train deps
	$(PY) -m ocr_core.train.reproduce --install

# Removes caches and derived files; keeps results, the Redis data and the secret (your data).
clean: stop
	rm -rf var/nginx var/nginx-check var/prometheus var/run .pytest_cache build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Everything, including stored results, the Redis index, the secret and the virtualenv.
distclean: clean
	rm -rf var $(VENV)
