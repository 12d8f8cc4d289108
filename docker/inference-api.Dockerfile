# syntax=docker/dockerfile:1
# The diffusers runtime (python -m inference_api serve). Build context: the repository root.
#   docker build -f docker/inference-api.Dockerfile -t sd-async-aws/inference-api .
# The GPU driver comes from the node (Bottlerocket NVIDIA variant); the CUDA user-space libraries come with the
# torch wheels, so the CUDA *base* image (driver capabilities and compat, no toolkit) is enough.
ARG CUDA_IMAGE=nvidia/cuda:12.9.1-base-ubuntu24.04
ARG TORCH_VERSION=2.13.0
# PyTorch's CUDA 12.9 wheel index; the lock file pins the CPU build used on development machines.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu129

FROM ${CUDA_IMAGE} AS build
ARG TORCH_VERSION
ARG TORCH_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY contract ./contract
COPY inference_api ./inference_api
# torch first from the CUDA index; then the rest under the lock file minus its CPU-only torch pin.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}" \
    && grep -v '^torch==' constraints.txt > /tmp/constraints-gpu.txt \
    && /opt/venv/bin/pip install -c /tmp/constraints-gpu.txt ".[runtime]"

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# Runs as uid 1000 (the chart's runAsUser); Ubuntu images ship an "ubuntu" user holding it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && (userdel --remove ubuntu 2>/dev/null || true) \
    && groupadd --gid 1000 runtime \
    && useradd --uid 1000 --gid runtime --create-home --shell /usr/sbin/nologin runtime
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    HOME=/home/runtime
USER 1000:1000
EXPOSE 8080
# Models come from the Mountpoint-for-S3 volume the chart mounts at /models.
ENTRYPOINT ["python", "-m", "inference_api"]
CMD ["serve", "--models", "/models", "--port", "8080", "--host", "0.0.0.0"]
