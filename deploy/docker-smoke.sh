#!/usr/bin/env bash
# Build the gateway image and send one request through a running container (on the built-in emulator).
#   deploy/docker-smoke.sh                          # base: the Dockerfile's pinned python:3.11.11-slim-bookworm
#   BASE=local/gradium-base:bookworm-py311 deploy/docker-smoke.sh   # a base built offline (make-local-base.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IMAGE="${IMAGE:-gradium-gateway:smoke}"
PORT="${PORT:-18080}"
build_args=()
[ -n "${BASE:-}" ] && build_args+=(--build-arg "BASE=$BASE")
# Host networking: the build reaches the package index the way this machine does, and the container
# needs no bridge (some daemons run with --bridge=none).
docker build --network host "${build_args[@]}" -t "$IMAGE" "$ROOT"
cid="$(docker run -d --network host -e GATEWAY_PORT="$PORT" -e GATEWAY_WORKERS=2 "$IMAGE")"
trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
user="$(docker exec "$cid" id -u)"
[ "$user" != "0" ] || { echo "the container runs as root" >&2; exit 1; }
ready=""
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && { ready=1; break; }
  [ "$(docker inspect -f '{{.State.Running}}' "$cid")" = "true" ] || break
  sleep 0.5
done
[ -n "$ready" ] || { echo "the container is not ready (or exited):" >&2; docker logs "$cid" 2>&1 | tail -30 >&2; exit 1; }
out="$(mktemp)"
curl -sf -X POST "http://127.0.0.1:$PORT/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM" \
  -H "xi-api-key: any-key-works-on-the-emulator" -H "Content-Type: application/json" \
  -d '{"text": "Hello from the container."}' -o "$out"
bytes="$(wc -c < "$out")"
rm -f "$out"
[ "$bytes" -gt 1000 ] || { echo "response too short: $bytes bytes" >&2; docker logs "$cid" >&2; exit 1; }
docker stop -t 30 "$cid" >/dev/null
echo "ok: image $IMAGE (uid $user) served $bytes bytes of mp3"
