#!/usr/bin/env bash
# Installs promtool (Debian's `prometheus` package ships it), which `make test` uses to
# check and unit-test the alerting rules in infra/deploy/prometheus/. Only the tool is
# wanted: the packaged server is stopped again if the package started it.
set -euo pipefail
if ! command -v promtool >/dev/null; then
  echo "installing prometheus (Debian package, for promtool)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >&2
  if [ -x /etc/init.d/prometheus ] && [ -f /run/prometheus.pid ]; then
    /etc/init.d/prometheus stop >&2 || true
  fi
fi
