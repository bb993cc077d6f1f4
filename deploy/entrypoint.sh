#!/bin/sh
# Container entrypoint: deploy/entrypoint.sh ROLE [ARGS...]
#   web      gunicorn serving the app chosen by GONGKAI_SERVICE (default: suite)
#   worker   Celery worker          beat     Celery beat (run exactly one)
#   migrate  every service's Alembic migrations (idempotent)
#   gongkai  any other `gongkai` subcommand, e.g. `gongkai create-admin --username U --password P`
set -eu

role="${1:-web}"
[ "$#" -gt 0 ] && shift

case "$role" in
  web)
    case "${GONGKAI_SERVICE:-suite}" in
      suite|portal|identity|interpret|consult|search|press) ;;
      *) echo "entrypoint: GONGKAI_SERVICE='${GONGKAI_SERVICE}' is not one of suite, portal, identity, interpret, consult, search, press" >&2
         exit 2 ;;
    esac
    if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
      # Files left by a previous run would be summed into this run's metrics.
      mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
      find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
    fi
    exec gunicorn --config deploy/gunicorn.conf.py "$@" services.wsgi:app
    ;;
  worker)  exec gongkai worker "$@" ;;
  beat)    exec gongkai beat "$@" ;;
  migrate) exec gongkai migrate "$@" ;;
  gongkai) exec gongkai "$@" ;;
  *)
    echo "entrypoint: unknown role '$role' (expected web, worker, beat, migrate or gongkai)" >&2
    exit 2
    ;;
esac
