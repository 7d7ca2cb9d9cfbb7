# syntax=docker/dockerfile:1
# gradserve's image: GPU (JAX's CUDA 12 plugin and CUDA libraries from PyPI) by default, CPU-only
# with a build argument. The host needs only the NVIDIA driver and container toolkit.
#
#   docker build -t gradserve:0.1.0-cuda .
#   docker build -t gradserve:0.1.0-cpu --build-arg DEVICE=cpu .
#
# Dependencies are installed by scripts/install.sh, the script CI runs, with the versions pinned
# in requirements/constraints.txt. Sizes, volumes and settings: docs/deployment.md.

# Pin by digest for reproducible builds (docker buildx imagetools inspect python:3.11-slim-trixie).
ARG PYTHON_IMAGE=python:3.11-slim-trixie

# --- build: a virtual environment in /opt/venv ----------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# cuda (default) or cpu: passed to scripts/install.sh as --device=...
ARG DEVICE=cuda
WORKDIR /src
RUN python -m venv /opt/venv
# Only what the install reads, so editing tests or docs does not invalidate this layer.
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY scripts/install.sh scripts/
COPY service/gradserve/ service/gradserve/
# pip's cache lives in a build cache mount: it speeds up rebuilds and never lands in a layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    PYTHON=/opt/venv/bin/python bash scripts/install.sh --device="${DEVICE}"

# --- runtime: the environment, the demo models, a non-root user -----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="gradserve" \
      org.opencontainers.image.description="Serve the derivatives of tabular neural models over HTTP" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric uid, so volumes and Kubernetes' runAsNonRoot can rely on it. /models and /cache
# belong to it: a named volume mounted there starts as a copy of them, owner included.
RUN groupadd --system --gid 10001 gradserve \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /home/gradserve \
       --create-home --shell /usr/sbin/nologin gradserve \
    && mkdir -p /models /cache/jax \
    && chown -R 10001:10001 /models /cache
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=10001:10001 /src/service/gradserve/demo_models/ /models/
# Settings are GRADSERVE_* variables (README: Settings). The JAX GPU memory defaults are set by
# the service itself (no preallocation), so they are not repeated here.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    GRADSERVE_HOST=0.0.0.0 \
    GRADSERVE_PORT=8000 \
    GRADSERVE_MODELS=/models \
    GRADSERVE_COMPILATION_CACHE=/cache/jax
USER 10001:10001
WORKDIR /home/gradserve
EXPOSE 8000
# Alive once the models are compiled and the port is open; python's standard library, no curl.
# The start period covers loading and compiling: seconds with a warm compilation cache, minutes
# cold (the three demo models: 72 s on two CPU cores; on an H100 a cold and a cached start
# together took over 5 min, BENCHMARKS.md).
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('GRADSERVE_PORT', '8000'), timeout=4)"]
# SIGTERM (docker stop) drains and exits 0; give it --graceful-timeout plus GRADSERVE_DRAIN_SECONDS.
ENTRYPOINT ["gradserve"]
CMD ["serve"]
