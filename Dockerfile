# One image for the API and the workers (docker-compose.yml picks the command).
# torch is installed first, pinned, from the CPU wheel index: an unpinned torch would pull a
# multi-GB CUDA build. For GPU workers build with
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ADVLAB_HOME=/data

WORKDIR /app
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

# dependencies first (cached layer), then the code
COPY pyproject.toml README.md ./
COPY advcore ./advcore
COPY lab ./lab
COPY service ./service
COPY worker ./worker
COPY launcher ./launcher
COPY client ./client
COPY migrations ./migrations
COPY alembic.ini ./
COPY examples ./examples
RUN pip install -e . && useradd --create-home --uid 1000 advlab && mkdir -p /data \
    && chown advlab /data
COPY docker/entrypoint.sh /usr/local/bin/advlab-entrypoint
RUN chmod +x /usr/local/bin/advlab-entrypoint

USER advlab
EXPOSE 8000
ENTRYPOINT ["advlab-entrypoint"]
CMD ["api"]
