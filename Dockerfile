# The clonewatch image: the `clonewatch` CLI with all its dependencies. docker-compose.yml
# runs it as the worker and the shipper; any other command works too, e.g.
#   docker compose run --rm worker decisions --follow
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/clonewatch
COPY pyproject.toml constraints.txt README.md ./
COPY clonewatch ./clonewatch
COPY schemas ./schemas
COPY ingest ./ingest
COPY detectors ./detectors
COPY sinks ./sinks
# The same pinned dependency set as `make install`.
RUN pip install -c constraints.txt .

RUN useradd --create-home --uid 10001 clonewatch
USER clonewatch
WORKDIR /home/clonewatch
ENTRYPOINT ["clonewatch"]
CMD ["--help"]
