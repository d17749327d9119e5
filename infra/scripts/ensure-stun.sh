#!/usr/bin/env bash
# Installs coturn, the STUN server the NAT tests start on a loopback port (tests/coturn.py).
# Debian enables no service for it (TURNSERVER_ENABLED stays off): nothing else listens.
set -euo pipefail
if ! command -v turnserver >/dev/null; then
  echo "installing coturn (Debian package)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends coturn >&2
fi
