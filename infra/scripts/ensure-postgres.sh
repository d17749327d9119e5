#!/usr/bin/env bash
# Makes sure a PostgreSQL server runs on 127.0.0.1:5432 that the tests can use, installing
# and starting Debian's package when there is none. Prints the URL the tests connect with;
# everything else goes to stderr.
set -euo pipefail
host=127.0.0.1 port=5432
url_trust="postgresql://postgres@$host:$port/postgres"
password=trunkplane-tests
url_password="postgresql://postgres:$password@$host:$port/postgres"

if ! pg_isready -q -h $host -p $port 2>/dev/null; then
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "installing PostgreSQL (Debian package)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
  for _ in $(seq 1 60); do
    pg_isready -q -h $host -p $port && break
    sleep 0.5
  done
  pg_isready -q -h $host -p $port || { echo "PostgreSQL did not start" >&2; exit 1; }
fi

if psql -w -q -h $host -p $port -U postgres -d postgres -c "select 1" >/dev/null 2>&1; then
  echo "$url_trust"
  exit 0
fi
if PGPASSWORD=$password psql -w -q -h $host -p $port -U postgres -d postgres \
    -c "select 1" >/dev/null 2>&1; then
  echo "$url_password"
  exit 0
fi
# A fresh Debian cluster wants a password over TCP: give the postgres role the tests' one.
runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD '$password'" >&2
echo "$url_password"
