#!/usr/bin/env bash
# Installs unbound, the DNS server the tests start on loopback (tests/dns_server.py): local
# SRV, NAPTR and A records with the TTLs a test chooses, changed while it runs through
# unbound-control. Debian's own unbound service is left stopped: the tests run their own.
set -euo pipefail
if ! command -v unbound >/dev/null || ! command -v unbound-control >/dev/null; then
  echo "installing unbound (Debian package)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends unbound >&2
fi
if [ -x /etc/init.d/unbound ] && [ -f /run/unbound.pid ] && \
   kill -0 "$(cat /run/unbound.pid)" 2>/dev/null; then
  /etc/init.d/unbound stop >&2 || true
fi
