# taskbox in one container: supervisord runs Redis, the API, the scheduler and workers.
#   docker build -t taskbox .
#   docker run -p 8000:8000 -v taskbox-data:/data taskbox
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 taskbox \
    && mkdir /data && chown taskbox:taskbox /data

WORKDIR /app
COPY pyproject.toml README.md supervisord.conf ./
COPY taskbox ./taskbox
RUN pip install --no-cache-dir .

ENV TASKBOX_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
VOLUME /data
USER taskbox
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"

STOPSIGNAL SIGTERM
CMD ["taskbox", "up"]
