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
# The API (`orders serve --port 8000`) and a worker's metrics (ORDERS_METRICS_PORT=9100).
EXPOSE 8000 9100

# One check per role, told apart by the container's command line (docker-compose.yml
# sets the same per service): the API answers /api/health on port 8000; a worker node of
# this host answers a ping through the broker; beat reaches the broker; anything else
# (migrate, one-shot commands) is healthy while it runs. Not `orders health`: it exits 1
# when a read model lags, which is no fault of the container it would run in.
HEALTHCHECK --interval=30s --timeout=20s --start-period=60s --retries=3 CMD \
    case "$(tr '\0' ' ' < /proc/1/cmdline)" in \
    *" serve "*) python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=5)" ;; \
    *" worker "*) celery -A workers.app inspect ping -t 10 | grep -q "@$HOSTNAME: OK" ;; \
    *" beat "*) python -c "from bootstrap import Settings; from redis import Redis; Redis.from_url(Settings.from_env().broker_url, socket_timeout=5).ping()" ;; \
    *) true ;; \
    esac

ENTRYPOINT ["orders"]
CMD ["worker"]
