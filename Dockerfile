# One image for all five Vigil services; pick one with the command:
#   docker run vigil services.ingest      (ingest, correlator, enricher, reporter, web)
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Every dependency ships wheels for this platform: no compiler in the image.
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install . && rm -rf build ./*.egg-info

# Default correlation rules and enrichment queries; docker-compose.yml bind-mounts the editable copies over them.
COPY deploy/correlation.yml deploy/enrichment.yml ./deploy/

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin vigil
USER 10001:10001

ENV VIGIL_HOST=0.0.0.0 \
    VIGIL_CORRELATION_RULES=/app/deploy/correlation.yml \
    VIGIL_ENRICHMENT_CONFIG=/app/deploy/enrichment.yml

ENTRYPOINT ["python", "-m"]
CMD ["services.web"]
