#!/bin/sh
# Parley's container entry point (the Dockerfile's ENTRYPOINT); also run by tests/deploy so the
# tests start daphne exactly as the image does.
#
#   web           serve HTTP and websockets with daphne (the default)
#   setup         one-shot deploy step: migrate, the provider from OPENAI_API_KEY, collectstatic
#                 into PARLEY_SETUP_STATIC_ROOT (the volume nginx serves), the first admin
#   housekeeping  the sweep of replies whose worker died, and the model catalog refresh
#   worker        the document ingestion jobs (django-tasks' db_worker)
#   anything else is run as a command, e.g. `python manage.py createsuperuser`
set -eu

cd "$(dirname "$0")/.."

case "${1:-web}" in
web)
    # --proxy-headers: the client address comes from X-Forwarded-For, which only nginx can
    # set: the workers are not published outside the compose network (T44).
    # --ping-interval/--ping-timeout: daphne pings every open websocket; the pings keep an
    # idle tab alive through nginx (proxy_read_timeout is longer) and close dead ones.
    exec daphne \
        --bind "${PARLEY_BIND:-0.0.0.0}" \
        --port "${PARLEY_PORT:-8000}" \
        --proxy-headers \
        --ping-interval "${PARLEY_WS_PING_INTERVAL:-20}" \
        --ping-timeout "${PARLEY_WS_PING_TIMEOUT:-30}" \
        config.asgi:application
    ;;
setup)
    python manage.py migrate --noinput
    # The provider from OPENAI_API_KEY, if set; an unreachable provider does not fail the step.
    python manage.py setup_providers
    # Old hashed files stay (no --clear): pages still open in a browser, or served by a worker
    # not yet upgraded, keep finding the files they name.
    if [ -n "${PARLEY_SETUP_STATIC_ROOT:-}" ]; then
        PARLEY_STATIC_ROOT="$PARLEY_SETUP_STATIC_ROOT" python manage.py collectstatic --noinput -v 0
    else
        python manage.py collectstatic --noinput -v 0
    fi
    python manage.py ensure_admin
    ;;
housekeeping)
    exec python manage.py housekeeping
    ;;
worker)
    exec python manage.py db_worker --no-startup-delay
    ;;
*)
    exec "$@"
    ;;
esac
