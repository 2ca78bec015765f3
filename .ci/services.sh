# Sourced by `make test`: point the suite at this machine's PostgreSQL and Redis.
# Locally they are used when they answer. In CI (CI=true) they are required: started when
# down, and the run stops loudly when that does not work.

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 30); do port_open "$1" && return 0; sleep 1; done
  return 1
}

if [ "${CI:-}" = "true" ]; then
  if ! port_open 5432; then
    echo "PostgreSQL is down: starting it" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  if ! port_open 6379; then
    echo "Redis is down: starting it" >&2
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
  wait_port 5432 || { echo "FATAL: PostgreSQL on 127.0.0.1:5432 could not be reached or started" >&2; exit 1; }
  wait_port 6379 || { echo "FATAL: Redis on 127.0.0.1:6379 could not be reached or started" >&2; exit 1; }
  export LARKAUTH_TEST_REQUIRE_SERVICES=1
fi

if port_open 5432; then
  export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/larkauth}"
  # Tests use their own test_ database; `makemigrations --check` reads this one's history.
  if [ -z "${TEST_DATABASE_URL:-}" ] && command -v psql >/dev/null; then
    psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'larkauth'" \
      | grep -q 1 || createdb -h 127.0.0.1 -U postgres larkauth 2>/dev/null || true
  fi
else
  echo "note: PostgreSQL not reachable, tests that need it are skipped" >&2
fi
if port_open 6379; then
  export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
else
  echo "note: Redis not reachable, tests that need it are skipped" >&2
fi

# Browser tests (tests/browser/) drive Debian's Chromium through Playwright (no browser
# download) and need a CJK font for Chinese names. Installed when missing and this shell may
# use apt-get (root); otherwise those tests are skipped, saying why (required in CI).
if [ ! -x /usr/bin/chromium ] || [ ! -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "Installing chromium and fonts-wqy-zenhei for the browser tests (log: /tmp/larkauth-apt.log)" >&2
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        chromium fonts-wqy-zenhei; } >/tmp/larkauth-apt.log 2>&1 \
      || echo "note: could not install Chromium (see /tmp/larkauth-apt.log), browser tests are skipped (in CI: fail)" >&2
  else
    echo "note: /usr/bin/chromium missing and apt-get not usable here, browser tests are skipped (in CI: fail)" >&2
  fi
fi
