# syntax=docker/dockerfile:1
# The queue agent sidecar (python -m queue_agent). Build context: the repository root.
#   docker build -f docker/queue-agent.Dockerfile -t sd-async-aws/queue-agent .
# checkov (make lint): the base image is pinned by the ARG below, which checkov cannot resolve; Kubernetes
# probes the containers (a Docker HEALTHCHECK is ignored there).
#checkov:skip=CKV_DOCKER_7:The FROM image is an ARG with a pinned version tag, which checkov does not resolve
#checkov:skip=CKV_DOCKER_2:Kubernetes ignores HEALTHCHECK; the chart's startup, readiness and liveness probes check the containers
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG EXTRAS=agent

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY contract ./contract
COPY queue_agent ./queue_agent
# A plain (non-editable) install into a venv that the runtime stage copies whole; every version pinned by the
# project's lock file.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install -c constraints.txt ".[${EXTRAS}]"

FROM ${PYTHON_IMAGE}
# uid 1000: the chart's pod security context runs the containers as 1000 (runAsNonRoot).
RUN groupadd --gid 1000 agent && useradd --uid 1000 --gid agent --no-create-home --shell /usr/sbin/nologin agent
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 1000:1000
# Prometheus /metrics and /healthz (METRICS_PORT).
EXPOSE 9090
ENTRYPOINT ["python", "-m", "queue_agent"]
