# agent-executor image:  docker build -t ghcr.io/bizmatters/agent-executor:<commit-sha> .
# CI builds it on every push to main (.github/workflows/image.yml).
#
# builder  installs the locked runtime dependencies (requirements.lock, every file checked
#          against its sha256) into /opt/venv, a venv without pip, then the package itself
#          without dependencies. The lock is installed before src/ is copied, so a code
#          change rebuilds only the last, small layer.
# runtime  python:3.11-slim with that venv, psql (postgresql-client, for the migrations
#          Job), migrations/ and scripts/ci/; nothing else from the repo.
#
# The base image is pinned by exact tag, not by digest: its digest could not be looked up
# where this file was written (no registry reachable). To pin it, replace the tag with
# `python:3.11.11-slim-bookworm@sha256:<digest>` from
# `docker buildx imagetools inspect python:3.11.11-slim-bookworm`.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
# The base image's pip installs into the venv, so no installer ends up in the runtime.
COPY requirements.lock ./
RUN python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --no-cache-dir --require-hashes --no-deps \
      -r requirements.lock
COPY pyproject.toml README.md ./
COPY src/ ./src/
# Built with the locked setuptools already in the venv: nothing is downloaded here.
RUN pip --python /opt/venv/bin/python install --no-cache-dir --no-deps --no-index \
      --no-build-isolation . \
 && /opt/venv/bin/python -c "import agent_executor"
COPY migrations/ /app/migrations/
COPY scripts/ci/ /app/scripts/ci/
# Executable whatever the file modes in the build context are.
RUN chmod 0755 /app/scripts/ci/*.sh

FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 app \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/app --shell /usr/sbin/nologin app
# SHUTDOWN_GRACE_SECONDS stays under the pod's termination grace: the EventDrivenService
# Composition sets none, so Kubernetes' 30 s applies (tests/deploy check it).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AGENT_EXECUTOR_PROFILE=production \
    PORT=8080 \
    SHUTDOWN_GRACE_SECONDS=25
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app
# Numeric, so Kubernetes runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080
# run.sh execs the service, so SIGTERM reaches it directly (graceful drain).
CMD ["/app/scripts/ci/run.sh"]
