# syntax=docker/dockerfile:1
# One image holding every Fanout binary: `fanout` (the built-in schema registry and the CLI), the
# consumer services `fanout-rewards`, `fanout-pinning` and `fanout-stats`, the delayed delivery
# scheduler `fanout-scheduler`, the task-flow engine `fanout-flows` and the callback gateway `fanout-gateway`. docker-compose.yml builds it once and runs each service
# with its own command and mounted config file.
#
# It sits at the repository root because the build context is the whole workspace (every member
# manifest must be present for `cargo build -p`), and tests/compose.rs expects it here.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry index and compiled dependencies between builds; the
# binaries are copied out because the target directory is a cache, not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        -p fanout-cli -p fanout-rewards -p fanout-pinning -p fanout-stats -p fanout-scheduler -p fanout-flows -p fanout-gateway \
    && mkdir -p /out \
    && cp target/release/fanout target/release/fanout-rewards target/release/fanout-pinning \
          target/release/fanout-stats target/release/fanout-scheduler target/release/fanout-flows \
          target/release/fanout-gateway /out/

FROM debian:bookworm-slim
# ca-certificates: registries and brokers behind TLS. Everything else is linked in (librdkafka,
# SQLite) or pure Rust (rustls).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/fanout fanout
COPY --from=build /out/ /usr/local/bin/
USER fanout
# The services' default SQLite files (sqlite:<service>.db) land here; compose mounts a volume.
WORKDIR /var/lib/fanout
