#!/bin/sh
# advlab container entrypoint: `api` (migrate, then serve HTTP), `worker` (one Celery worker
# with its reaper), `migrate` (upgrade the schema and exit), or any other command as given.
set -e
case "$1" in
  api)
    shift
    advlab migrate
    # X-Forwarded-For is believed only from ADVLAB_TRUSTED_PROXIES (uvicorn trusts 127.0.0.1 by default)
    if [ -n "${ADVLAB_TRUSTED_PROXIES:-}" ]; then
      set -- --proxy-headers --forwarded-allow-ips "$ADVLAB_TRUSTED_PROXIES" "$@"
    else
      set -- --no-proxy-headers "$@"
    fi
    exec uvicorn service.main:app --host 0.0.0.0 --port "${ADVLAB_PORT:-8000}" "$@"
    ;;
  worker)
    shift
    exec advlab worker --concurrency "${ADVLAB_WORKER_CONCURRENCY:-1}" \
         --queues "${ADVLAB_WORKER_QUEUES:-${ADVLAB_QUEUE:-advlab}}" "$@"
    ;;
  migrate)
    exec advlab migrate
    ;;
  *)
    exec "$@"
    ;;
esac
