# fedbroker: one image for both roles, the broker (`fedbroker serve`) and a site agent
# (`fedbroker agent`, with the Kubernetes and Ray backends' libraries).
#   docker build -t fedbroker:0.1.0 .
#   docker run --rm fedbroker:0.1.0 serve --help
# Dependencies come from deploy/requirements.txt, pinned with hashes (regenerate it as its header
# says); the base image is pinned to a Python release and Debian version. To pin it by digest
# as well: docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: a virtual environment with fedbroker and its pinned dependencies
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/fedbroker/bin:$PATH
RUN python -m venv /opt/fedbroker
WORKDIR /src
# The dependencies first: this layer is rebuilt only when the lock changes.
COPY deploy/requirements.txt deploy/requirements.txt
RUN pip install --require-hashes -r deploy/requirements.txt
COPY pyproject.toml README.md ./
COPY broker broker
COPY site_agents site_agents
COPY protos protos
RUN pip install --no-deps --no-build-isolation . \
    && python -m compileall -q /opt/fedbroker/lib

# ---- runtime: the slim base, the environment, an unprivileged user
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/fedbroker/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 fedbroker \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin fedbroker
COPY --from=build /opt/fedbroker /opt/fedbroker
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /tmp
# gRPC (broker), Prometheus metrics (broker, agent)
EXPOSE 50051 9464 9465
ENTRYPOINT ["fedbroker"]
CMD ["--help"]
