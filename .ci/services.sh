#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on 127.0.0.1, as the tests and the
# local stack need: starts them when stopped, installs them (Debian) when
# absent. Commands from ../shared/guide/MACHINE.md. Also installs Debian's
# chromium for the dashboard's browser test, prometheus for promtool and
# npm for Mailpit's web UI (make tools). With --cli (make run) it also
# installs the command-line tools the README's examples use: uuidgen
# (uuid-runtime) and kcat. Idempotent and quiet when everything is already
# there.
set -euo pipefail

pg_up()    { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

install() {
  if [ "$(id -u)" != 0 ]; then
    echo "services: $1 is not installed and this is not root; run: sudo apt-get install -y $1" >&2
    exit 1
  fi
  echo "services: installing $1 (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

if ! pg_up; then
  command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1 || install postgresql
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "services: PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }
  # Trust auth for local connections, as on the reference machine.
  psql -h 127.0.0.1 -U postgres -c 'select 1' >/dev/null 2>&1 || {
    echo "services: cannot connect as postgres with trust auth on 127.0.0.1; fix pg_hba.conf" >&2; exit 1; }
fi

if ! redis_up; then
  command -v redis-server >/dev/null || install redis-server
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 30); do redis_up && break; sleep 0.2; done
  redis_up || { echo "services: Redis does not answer on 127.0.0.1:6379" >&2; exit 1; }
fi

# The dashboard test drives Debian's chromium (never a browser download).
if ! command -v chromium >/dev/null; then
  install chromium
fi

# Mailpit's web UI is built with npm (make tools, shared/mailpit/build.go):
# its Go module has the UI's sources, not the bundle.
if ! command -v npm >/dev/null; then
  install npm
fi

# promtool checks the alerting rules (observe/alerts.yml) in make test; the
# same package is make observe's Prometheus.
if ! command -v promtool >/dev/null; then
  install prometheus
fi

# The README's examples: Idempotency-Key: $(uuidgen), and kcat producing
# into the local Kafka. Only for make run; the tests need neither.
if [ "${1:-}" = "--cli" ]; then
  command -v uuidgen >/dev/null || install uuid-runtime
  command -v kcat >/dev/null || install kcat
fi
