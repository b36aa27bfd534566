#!/bin/sh
# Install Haraka (npm package `Haraka`, pinned) for bench/run.py's `haraka` server, under
# bench/.haraka/ (gitignored: node_modules is never committed), with the SPF and DKIM
# plugins bench/auth_haraka.py loads (the versions Haraka 3.3.4's optionalDependencies name,
# which --omit=optional leaves out otherwise). Needs node >= 20 and npm.
# Idempotent; run.py calls it when bench/.haraka/node_modules/Haraka/bin/haraka is missing,
# auth_haraka.py when a plugin is.
set -e
cd "$(dirname "$0")"
mkdir -p .haraka
exec npm install --prefix .haraka --no-audit --no-fund --omit=optional --loglevel=error Haraka@3.3.4 \
    haraka-plugin-spf@1.3.0 haraka-plugin-dkim@1.3.1
