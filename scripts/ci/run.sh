#!/usr/bin/env bash
# Container entry point: HTTP API, health, metrics and the NATS consumer in one process.
# `exec` replaces this shell, so SIGTERM from Kubernetes reaches agent-executor itself,
# which stops fetching, finishes or naks in-flight jobs and exits 0.
set -euo pipefail
exec agent-executor serve "$@"
