# syntax=docker/dockerfile:1
# The gateway image: dependencies in their own layer (rebuilt only when pyproject.toml changes), then the
# code; runs as a non-root user. The base is pinned to an exact Python and Debian release; pin its digest
# too where your registry is reachable (BASE=python:3.11.11-slim-bookworm@sha256:...).
ARG BASE=python:3.11.11-slim-bookworm
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_MAPPINGS=/app/mappings

RUN useradd --create-home --uid 10001 --user-group gateway
WORKDIR /app

# 1. Dependencies only (plus the `redis` extra for fleets): this layer survives code changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['redis']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt

# 2. The code.
COPY README.md ./
COPY gateway ./gateway
COPY mappings ./mappings
RUN pip install --no-deps . && gradium-gateway check /app/mappings

USER 10001:10001
EXPOSE 8080 8443
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["gradium-gateway"]
CMD ["serve"]
