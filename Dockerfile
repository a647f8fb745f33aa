# agent-executor image:  docker build -t ghcr.io/bizmatters/agent-executor:<version> .
#
# builder  installs the package and its runtime dependencies (no extras) into /opt/venv,
#          a venv without pip or setuptools, and stages migrations/ and scripts/ci/.
# runtime  python:3.11-slim with that venv, psql (postgresql-client, for the migrations
#          init container), migrations/ and scripts/ci/; nothing else from the repo.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src/ ./src/
# The base image's pip installs into the venv, so no installer ends up in the runtime.
RUN python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --no-cache-dir . \
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
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AGENT_EXECUTOR_PROFILE=production \
    PORT=8080
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app
# Numeric, so Kubernetes runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080
# run.sh execs the service, so SIGTERM reaches it directly (graceful drain).
CMD ["/app/scripts/ci/run.sh"]
