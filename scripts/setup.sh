#!/usr/bin/env bash
# Create the virtual environment and install what one purpose needs, no more:
#   run    stalwart itself, libisal2 (ISA-L: fast Reed-Solomon parity at
#          ingest; zfec is used without it) and graphviz (its dot lays out the
#          dashboard's system map)
#   test   run + the test extras, chromium (browser tests), b3sum (digest
#          cross-checks) and prometheus (its promtool checks /metrics and the
#          alert rules)
#   bench  test + the benchmark extras and par2 (the integrity peer)
# System packages are installed only when missing (apt-get, as root).
# Safe to run again.
#
# Usage: bash scripts/setup.sh [--dry-run] run|test|bench [PYTHON] [VENV]
# --dry-run prints what would be installed and changes nothing.
set -euo pipefail

DRY_RUN=0
if [ "${1:-}" = "--dry-run" ]; then
  DRY_RUN=1
  shift
fi
PURPOSE="${1:-}"
PYTHON="${2:-python3.11}"
VENV="${3:-.venv}"

case "$PURPOSE" in
  run) EXTRAS="" ; PACKAGES=(libisal2 graphviz) ;;
  test) EXTRAS="[test]" ; PACKAGES=(libisal2 graphviz chromium b3sum prometheus) ;;
  bench) EXTRAS="[test,bench]" ; PACKAGES=(libisal2 graphviz chromium b3sum prometheus par2) ;;
  *)
    echo "setup: say what for: bash scripts/setup.sh [--dry-run] run|test|bench [PYTHON] [VENV]" >&2
    exit 2
    ;;
esac

installed() {
  case "$1" in
    libisal2) ldconfig -p 2>/dev/null | grep 'libisal\.so\.2' >/dev/null ;;
    prometheus) command -v promtool >/dev/null 2>&1 ;;
    graphviz) command -v dot >/dev/null 2>&1 ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for package in "${PACKAGES[@]}"; do
  installed "$package" || missing+=("$package")
done

if [ "$DRY_RUN" = 1 ]; then
  echo "python: $VENV from $PYTHON, pip install -e '.$EXTRAS'"
  echo "system packages: ${PACKAGES[*]}"
  echo "missing, would install: ${missing[*]:-nothing}"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e ".$EXTRAS"

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" \
      || echo "setup: could not install ${missing[*]}; what needs them will skip (or fail in CI)" >&2
  else
    echo "setup: please install ${missing[*]} (Debian: apt-get install ${missing[*]})" >&2
  fi
fi
