# The ocr-origin image: gunicorn + origin.wsgi:app with the CPU build of torch.
# docker-compose.yml builds it; nginx, redis and S3 come from their own images.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# torch first, from PyTorch's CPU index: a plain `pip install torch` pulls the CUDA build and
# several GB of nvidia wheels. deploy/constraints.txt then pins it for everything after.
COPY deploy/constraints.txt deploy/constraints.txt
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"

# Dependencies before the source, so code edits do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p origin cache ocr_core && touch origin/__init__.py cache/__init__.py ocr_core/__init__.py \
    && pip install -c deploy/constraints.txt -e . \
    && rm -rf origin cache ocr_core

# Source, shipped weights and the deploy files (gunicorn.conf.py; nginx template for `doctor`).
COPY origin ./origin
COPY cache ./cache
COPY ocr_core ./ocr_core
COPY deploy ./deploy

RUN useradd --system --uid 10001 --home /app ocr && mkdir -p /app/var && chown ocr /app/var
USER ocr

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3).status == 200 else 1)"
CMD ["ocr-origin", "serve", "--bind", "0.0.0.0:8000"]
