#!/usr/bin/env bash
# Creates the virtual environment and installs trunkplane into it (editable).
# Usage: bootstrap-python.sh PYTHON VENV REQUIREMENT   (REQUIREMENT: "." or ".[dev]")
set -euo pipefail
python=$1 venv=$2 requirement=$3

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "need root to install Debian packages: $*" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

command -v "$python" >/dev/null || apt_install python3 python3-venv python3-pip
"$python" - <<'PY' || { echo "trunkplane needs Python 3.11 or newer" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
if [ ! -x "$venv/bin/pip" ]; then
  rm -rf "$venv"
  "$python" -m venv "$venv" 2>/dev/null || {
    apt_install python3-venv
    rm -rf "$venv"
    "$python" -m venv "$venv"
  }
fi
"$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" >&2 || true
"$venv/bin/pip" install -q --disable-pip-version-check -e "$requirement" 2>&1 \
  | grep -v "^WARNING: Location" >&2 || true
"$venv/bin/python" -c "import eventsourcing, grpc, trunkplane.v1.trunk_pb2, infra.cli" \
  || { echo "installing trunkplane into $venv failed" >&2; exit 1; }
