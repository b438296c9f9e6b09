#!/usr/bin/env bash
# Create the virtual environment and install everything `make test` and
# `make bench` need, including Debian's chromium (browser tests) and the
# benchmark peers' command-line tools. Safe to run again.
set -euo pipefail
PYTHON="${1:-python3.11}"
VENV="${2:-.venv}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e '.[test,bench]'

# System packages: chromium for the browser tests, par2 and b3sum for the
# integrity benchmarks and digest cross-checks, libisal2 (ISA-L) for fast
# Reed-Solomon parity at ingest (zfec is used without it). Installed only when missing.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v par2 >/dev/null 2>&1 || missing+=(par2)
command -v b3sum >/dev/null 2>&1 || missing+=(b3sum)
ldconfig -p 2>/dev/null | grep 'libisal\.so\.2' >/dev/null || missing+=(libisal2)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" \
      || echo "setup: could not install ${missing[*]}; tests needing them will skip (or fail in CI)" >&2
  else
    echo "setup: please install ${missing[*]} (Debian: apt-get install ${missing[*]})" >&2
  fi
fi
