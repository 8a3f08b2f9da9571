#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on loopback; start them if they are down.
# With CI=true a service that cannot be started is an error (the tests must not skip).
set -u
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! pg_up; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! redis_up; then
  echo "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 1 30); do redis_up && break; sleep 1; done
fi

status=0
pg_up && echo "PostgreSQL is up" || { echo "PostgreSQL is NOT reachable on 127.0.0.1:5432"; status=1; }
redis_up && echo "Redis is up" || { echo "Redis is NOT reachable on 127.0.0.1:6379"; status=1; }
if [ "$status" != 0 ] && [ "${CI:-}" = "true" ]; then
  echo "CI=true: the database tests must run, refusing to continue" >&2
  exit 1
fi
exit 0
