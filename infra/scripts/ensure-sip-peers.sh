#!/usr/bin/env bash
# Installs the SIP peers the tests start on loopback: Kamailio with its SQLite and TLS
# modules (the provider's registrar and call proxy), sipsak, baresip (the PBX and far-end
# phones of the calls tests), and openssl for their certificates.
set -euo pipefail
missing=()
command -v kamailio >/dev/null || missing+=(kamailio)
ls /usr/lib/*/kamailio/modules/db_sqlite.so >/dev/null 2>&1 || missing+=(kamailio-sqlite-modules)
ls /usr/lib/*/kamailio/modules/tls.so >/dev/null 2>&1 || missing+=(kamailio-tls-modules)
command -v sipsak >/dev/null || missing+=(sipsak)
command -v baresip >/dev/null || missing+=(baresip-core)  # the calls tests' phones
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
# Debian starts the packaged Kamailio on 5060 after installing it; the tests run their
# own instances and need nothing of it.
if [ -x /etc/init.d/kamailio ] && pgrep -x kamailio >/dev/null 2>&1 && \
   [ -f /run/kamailio/kamailio.pid ]; then
  /etc/init.d/kamailio stop >&2 || true
fi
