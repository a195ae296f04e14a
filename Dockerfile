# One image for every role: `orders migrate`, `orders worker ...`, `orders beat`,
# `orders serve`. The benchmark is not in it (`orders bench` says how to get it).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY commands ./commands
COPY domain ./domain
COPY store ./store
COPY readmodels ./readmodels
COPY bootstrap ./bootstrap
COPY workers ./workers
COPY cli ./cli
COPY api ./api
RUN pip install . && useradd --system --no-create-home orders

# Celery warns when a worker runs as root; a worker has no business doing so.
USER orders
ENTRYPOINT ["orders"]
CMD ["worker"]
