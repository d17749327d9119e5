#!/usr/bin/env bash
# What the demo provider runs: Kamailio (installed as for the tests) and baresip-core.
set -euo pipefail
"$(dirname "$0")/../scripts/ensure-sip-peers.sh"
if ! command -v baresip >/dev/null; then
  echo "installing baresip-core (Debian package)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends baresip-core >&2
fi
