#!/usr/bin/env bash
# Points every manifest that runs the agent-executor image (the service claim, the
# migrations and stream Jobs, the prune CronJob) at one tag: the GitOps deploy step.
#
#   deploy/set-image-tag.sh TAG [FOLDER]    FOLDER: deploy/claims/intelligence-deepagents
#
# CI runs it with the commit SHA it just pushed, then commits the change (ArgoCD syncs it).
# To roll back, revert that commit, or run it with an older SHA and commit.
set -euo pipefail
IMAGE=ghcr.io/bizmatters/agent-executor
TAG=${1:?usage: deploy/set-image-tag.sh TAG [FOLDER]}
FOLDER=${2:-$(cd "$(dirname "$0")" && pwd)/claims/intelligence-deepagents}
[[ $TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ && $TAG != latest ]] \
  || { echo "set-image-tag: '$TAG' is not an immutable image tag" >&2; exit 1; }
mapfile -t files < <(grep -rlE --include='*.yaml' "$IMAGE:" "$FOLDER" || true)
((${#files[@]} > 0)) || { echo "set-image-tag: no manifest in $FOLDER uses $IMAGE" >&2; exit 1; }
sed -i -E "s#($IMAGE):[A-Za-z0-9_][A-Za-z0-9_.-]*#\1:$TAG#g" "${files[@]}"
echo "set-image-tag: $IMAGE:$TAG in ${files[*]#"$FOLDER"/}"
