# syntax=docker/dockerfile:1
# The diffusers runtime (python -m inference_api serve). Build context: the repository root.
#   docker build -f docker/inference-api.Dockerfile -t sd-async-aws/inference-api .
#
# What must agree (tests/infra/test_images.py checks it; `make lint` resolves the pins for this platform):
# - Python: the lock file (constraints.txt) is resolved for CPython 3.11, so the base is the official 3.11 image.
# - torch: the lock's version, as its PyPI build. torch 2.13's Linux wheels on PyPI are CUDA 13.0 builds that
#   bring the CUDA user-space libraries as nvidia-* wheels: no CUDA toolkit or CUDA base image is needed.
# - Driver: the GPU node's. CUDA 13.0 needs NVIDIA driver 580 or newer (the R580 line of the EKS NVIDIA AMIs);
#   NVIDIA_REQUIRE_CUDA makes the NVIDIA container runtime refuse an older driver with a clear message.
# checkov (make lint): the base image is pinned by the ARG below, which checkov cannot resolve; Kubernetes
# probes the containers (a Docker HEALTHCHECK is ignored there).
#checkov:skip=CKV_DOCKER_7:The FROM image is an ARG with a pinned version tag, which checkov does not resolve
#checkov:skip=CKV_DOCKER_2:Kubernetes ignores HEALTHCHECK; the chart's startup, readiness and liveness probes check the containers
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The lock pins torch's CPU build (2.13.0+cpu) for development machines; the image takes the same version's
# PyPI (CUDA) build.
ARG TORCH_VERSION=2.13.0
ARG EXTRAS=runtime
# Installed without their dependencies: the CLIP vocabulary's package (its data file only).
ARG NO_DEPS=clip-anytorch

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION
ARG EXTRAS
ARG NO_DEPS
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY contract ./contract
COPY inference_api ./inference_api
# The lock file with torch's pin swapped for the PyPI build; every other version as locked.
RUN python -m venv /opt/venv \
    && grep -v '^torch==' constraints.txt > /tmp/constraints-image.txt \
    && echo "torch==${TORCH_VERSION}" >> /tmp/constraints-image.txt \
    && /opt/venv/bin/pip install -c /tmp/constraints-image.txt ".[${EXTRAS}]" \
    && /opt/venv/bin/pip install --no-deps -c /tmp/constraints-image.txt ${NO_DEPS}

FROM ${PYTHON_IMAGE}
# Runs as uid 1000 (the chart's runAsUser).
RUN groupadd --gid 1000 runtime \
    && useradd --uid 1000 --gid runtime --create-home --shell /usr/sbin/nologin runtime
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    HOME=/home/runtime \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    NVIDIA_REQUIRE_CUDA="cuda>=13.0"
USER 1000:1000
EXPOSE 8080
# Models come from the Mountpoint-for-S3 volume the chart mounts at /models.
ENTRYPOINT ["python", "-m", "inference_api"]
CMD ["serve", "--models", "/models", "--port", "8080", "--host", "0.0.0.0"]
