# evalctl: the service (`evalctl serve`), a runner (`evalctl runner start`) or any command.
#   CPU image:  docker build -t evalctl .
#   CUDA image: docker build -t evalctl:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
# The torch wheel comes first, from the index the build arg names, so `pip install .`
# finds torch satisfied and does not pull the default (CUDA) wheel into a CPU image.
# The dashboard's front-end files (htmx, uPlot) come from npm, pinned by package-lock.json,
# and are served by evalctl itself: no CDN at run time.
FROM node:20-slim AS assets
WORKDIR /assets
COPY dashboards/package.json dashboards/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
    && mkdir vendor \
    && cp node_modules/htmx.org/dist/htmx.min.js node_modules/uplot/dist/uPlot.iife.min.js \
          node_modules/uplot/dist/uPlot.min.css vendor/

FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EVALCTL_HOME=/data/evalctl

# git: runs record the commit of the spec's repository (lineage).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY service ./service
COPY evaluators ./evaluators
COPY runners ./runners
COPY monitors ./monitors
COPY dashboards ./dashboards
COPY --from=assets /assets/vendor ./dashboards/static/vendor
COPY evalctl ./evalctl
# Installed in place (-e): service.db finds the migrations at <source>/alembic, which a
# plain `pip install .` leaves behind (alembic/ is not a package).
RUN pip install -e .

RUN useradd --create-home --uid 1000 evalctl \
    && mkdir -p /data/evalctl /shared \
    && chown evalctl:evalctl /data/evalctl /shared
USER evalctl

EXPOSE 8080
ENTRYPOINT ["evalctl"]
CMD ["--help"]
