#!/usr/bin/env bash
# Installs the tools `npm run bench` needs that npm cannot provide: wrk (the load generator,
# chosen because a C event loop is never the bottleneck here, unlike per-request JS).
# Idempotent: does nothing when wrk is already on PATH; runs `apt-get update` at most once.
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
  echo "wrk already installed: $(command -v wrk)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-bench-tools: wrk is missing and installing it needs root (apt-get install wrk)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends wrk
command -v wrk >/dev/null 2>&1 || { echo "install-bench-tools: wrk still not on PATH" >&2; exit 1; }
echo "wrk installed: $(command -v wrk)"
