# syntax=docker/dockerfile:1
# Gongkai (公开) image: one image for every service and role.
#   docker build -t gongkai .
#   docker run -e GONGKAI_SERVICE=suite ... gongkai web      (roles: web, worker, beat, migrate, gongkai <args>)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so code changes reuse this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip pip install -r /tmp/requirements.txt
COPY . .
# Compiled catalogues (.mo) must be in the wheel even if the checkout only has the .po files.
RUN if ls services/portal/translations/*/LC_MESSAGES/*.po >/dev/null 2>&1; then \
      pybabel compile -d services/portal/translations; \
    fi
RUN --mount=type=cache,target=/root/.cache/pip pip install --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    GONGKAI_ENV=production \
    GONGKAI_SERVICE=suite \
    GONGKAI_BIND=0.0.0.0:8000 \
    GONGKAI_DATA_DIR=/var/lib/gongkai
RUN groupadd --system --gid 10001 gongkai \
 && useradd --system --uid 10001 --gid gongkai --home-dir /var/lib/gongkai --no-create-home --shell /usr/sbin/nologin gongkai \
 && install -d -o gongkai -g gongkai -m 0750 /var/lib/gongkai
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chmod=0755 deploy/entrypoint.sh deploy/
COPY --chmod=0644 deploy/gunicorn.conf.py deploy/
USER gongkai
EXPOSE 8000
# Only meaningful for the web role; compose disables it for worker, beat and migrate.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as r; port = os.environ.get('GONGKAI_BIND', '0.0.0.0:8000').rsplit(':', 1)[-1]; r.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]
ENTRYPOINT ["deploy/entrypoint.sh"]
CMD ["web"]
