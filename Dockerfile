# The detector service (and the simulator, same image): docker build -t fraud-detector .
# The audit report needs plotting libraries, which the service does not: --build-arg EXTRAS=report.
FROM python:3.11-slim
ARG EXTRAS=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY detector ./detector
COPY producers ./producers
COPY devbroker ./devbroker
RUN pip install ".${EXTRAS:+[$EXTRAS]}" && rm -rf /app

# Never root: the service needs no privileges, only the network. /reports is where the report
# service's volume is mounted: a new volume takes this directory's owner.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin detector \
    && mkdir /reports && chown detector /reports
USER detector
WORKDIR /tmp

# Metrics and health (see detector/service/health.py); FRAUD_METRICS_PORT moves both.
ENV FRAUD_METRICS_PORT=9400
EXPOSE 9400
# Liveness only: readiness (/readyz) fails during rebalances, which is no reason to restart.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${FRAUD_METRICS_PORT}/healthz', timeout=4)"

# SIGTERM (docker stop) checkpoints every partition and leaves the group before exiting.
STOPSIGNAL SIGTERM
CMD ["fraud-detector", "run"]
