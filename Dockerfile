# syntax=docker/dockerfile:1.7
# One image for every hftpipe process on a cluster: KFP components, training (single process or a
# PyTorchJob under torchrun), the KServe predictor, the Flask UI and the MLflow tracking server.
# The entry point is `hftpipe`; each manifest picks its sub-command (train, serve, ui, pipeline ...),
# or overrides the command with `mlflow server`.
#
#   docker build -t ghcr.io/hftpipe/hftpipe:0.1.0 .                               # CPU (default)
#   docker build --build-arg VARIANT=cuda -t ghcr.io/hftpipe/hftpipe:0.1.0-cuda .  # CUDA 12.8 + NCCL
#
# Both variants install exactly torch==$TORCH_VERSION: the CPU wheel from the PyTorch CPU index, or the
# CUDA wheel (which bundles cuDNN and NCCL) on top of an NVIDIA CUDA runtime base.

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---- operating-system bases, one per variant -------------------------------------------------------
FROM ${PYTHON_IMAGE} AS os-cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*

FROM ${CUDA_IMAGE} AS os-cuda
# Ubuntu 24.04 ships Python 3.12 (hftpipe needs >= 3.11); `python` must exist for KFP's launcher.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv tini ca-certificates \
 && ln -sf /usr/bin/python3 /usr/local/bin/python \
 && rm -rf /var/lib/apt/lists/*

FROM os-${VARIANT} AS os

# ---- builder: a self-contained virtual environment in /opt/venv -------------------------------------
FROM os AS builder
ARG VARIANT
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_CPU=https://download.pytorch.org/whl/cpu
ARG TORCH_INDEX_CUDA=https://download.pytorch.org/whl/cu128
# Drivers the deployment needs beyond the package: psycopg2 for a PostgreSQL MLflow backend store;
# add e.g. boto3 for S3 artifacts (--build-arg EXTRA_PACKAGES="psycopg2-binary boto3").
ARG EXTRA_PACKAGES="psycopg2-binary"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# torch first, from the variant's index: the package's own range (torch>=2.3,<=2.14.1) is then
# already satisfied and pip never swaps in a different build from PyPI.
RUN case "$VARIANT" in \
      cpu)  index="$TORCH_INDEX_CPU" ;; \
      cuda) index="$TORCH_INDEX_CUDA" ;; \
      *)    echo "VARIANT must be cpu or cuda, got '$VARIANT'" >&2; exit 1 ;; \
    esac \
 && pip install "torch==${TORCH_VERSION}" --index-url "$index"
WORKDIR /build
# Metadata first so the dependency layer is cached while only the source changes. constraints.txt pins
# every dependency's version, so two builds of one commit install the same packages.
COPY pyproject.toml README.md constraints.txt ./
COPY src ./src
RUN pip install -c constraints.txt . ${EXTRA_PACKAGES} \
 && python -c "import torch, hftpipe; assert torch.__version__.startswith('${TORCH_VERSION}'), torch.__version__"

# ---- runtime ----------------------------------------------------------------------------------------
FROM os AS runtime
ARG VARIANT
ARG UID=10001
LABEL org.opencontainers.image.title="hftpipe" \
      org.opencontainers.image.description="hftpipe: LOB data -> training -> MLflow -> KServe -> Flask UI" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.hftpipe.variant="${VARIANT}"
# A fixed numeric UID so Kubernetes can enforce runAsNonRoot without looking up /etc/passwd.
RUN groupadd --system --gid ${UID} hftpipe \
 && useradd --system --uid ${UID} --gid ${UID} --home-dir /home/hftpipe --create-home hftpipe \
 && mkdir -p /var/lib/hftpipe \
 && chown ${UID}:${UID} /var/lib/hftpipe
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# What the commands read relative to the working directory: params.yaml, expectation suites, the
# shipped LOBSTER sample (default data of `hftpipe pipeline run`), components and compiled pipelines.
COPY params.yaml ./
COPY expectations ./expectations
COPY data/raw ./data/raw
COPY components ./components
COPY pipelines ./pipelines
COPY serving ./serving
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/hftpipe \
    HFTPIPE_HOME=/var/lib/hftpipe \
    HFTPIPE_REPO=/app \
    MPLCONFIGDIR=/tmp/matplotlib \
    DVC_NO_ANALYTICS=1 \
    HEALTHCHECK_URL=""
USER ${UID}:${UID}
VOLUME ["/var/lib/hftpipe"]
# 8080: `hftpipe serve` (the predictor); 5000: `hftpipe ui -S ui.host=0.0.0.0 -S ui.port=5000`, served by
# gunicorn (threads, request/keep-alive time limits, a connection cap; `--dev` is Werkzeug, for debugging).
EXPOSE 8080 5000
# One image, several servers: `docker run -e HEALTHCHECK_URL=http://127.0.0.1:8080/v2/health/ready`
# turns the check on for the process at hand; batch commands (train, pipeline run) leave it empty.
# Kubernetes ignores HEALTHCHECK: the manifests in kubernetes/ declare liveness/readiness probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; u = os.environ.get('HEALTHCHECK_URL'); sys.exit(0 if not u or urllib.request.urlopen(u, timeout=4).status < 400 else 1)"]
# tini reaps torchrun's and gunicorn's children and forwards SIGTERM, so pods stop cleanly.
ENTRYPOINT ["tini", "--", "hftpipe"]
CMD ["--help"]
