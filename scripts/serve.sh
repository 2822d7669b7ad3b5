#!/usr/bin/env bash
# Serve the app on one port (production build). With a broker configured, also run a Celery worker and beat.
set -euo pipefail
PORT="${1:-3000}"
cd "$(dirname "$0")/.."
BIN=.venv/bin
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

# Links in messages point at this server unless PUBLIC_URL is set (environment or .env).
PUBLIC_URL="$(PORT="$PORT" $BIN/python -c 'import os; from backend.settings import get_settings as g; s = g()
print(s.public_url if "public_url" in s.model_fields_set else "http://localhost:" + os.environ["PORT"])')"
export PUBLIC_URL

broker="$($BIN/python -c 'from backend.settings import get_settings; print(get_settings().broker_url or "")')"
if [ -n "$broker" ] && [ "${START_WORKER:-1}" = "1" ]; then
  echo "Starting a Celery worker and beat (broker configured)."
  $BIN/celery -A backend.worker worker --loglevel=INFO --concurrency=2 --without-gossip --without-mingle &
  pids+=($!)
  mkdir -p data
  $BIN/celery -A backend.worker beat --loglevel=INFO --schedule=data/celerybeat-schedule &
  pids+=($!)
else
  echo "No broker configured: background tasks run in-process."
fi

$BIN/reflex run --env prod --single-port --frontend-port "$PORT" --backend-port "$PORT" --loglevel warning
