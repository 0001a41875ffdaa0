#!/usr/bin/env bash
# A base image built without any image registry (debootstrap from the Debian mirror): Debian bookworm with
# its Python 3.11, pip and this machine's CA bundle. For offline builds only; production uses the
# Dockerfile's pinned python:3.11.11-slim-bookworm.
#   sudo deploy/make-local-base.sh && BASE=local/gradium-base:bookworm-py311 deploy/docker-smoke.sh
set -euo pipefail
ROOTFS="${ROOTFS:-/tmp/gradium-base-rootfs}"
TAG="${TAG:-local/gradium-base:bookworm-py311}"
[ -x "$ROOTFS/usr/bin/python3" ] || debootstrap --variant=minbase \
  --include=python3,python3-pip,python-is-python3,python3-venv,ca-certificates bookworm "$ROOTFS" http://deb.debian.org/debian
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
tar -C "$ROOTFS" -c . | docker import --change 'ENV PIP_BREAK_SYSTEM_PACKAGES=1' --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' - "$TAG"
echo "$TAG"
