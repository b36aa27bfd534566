#!/bin/sh
# Install Haraka (npm package `Haraka`, pinned) for bench/run.py's `haraka` server, under
# bench/.haraka/ (gitignored: node_modules is never committed). Needs node >= 20 and npm.
# Idempotent; run.py calls it when bench/.haraka/node_modules/Haraka/bin/haraka is missing.
set -e
cd "$(dirname "$0")"
mkdir -p .haraka
exec npm install --prefix .haraka --no-audit --no-fund --omit=optional --loglevel=error Haraka@3.3.4
