# Slipway server/CLI image: the `slipway` binary from package slipway-api.
#
#   docker build -t slipway .
#   docker run -d --name slipway \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v slipway-data:/var/lib/slipway slipway ...
#
# The base images are build arguments so that a machine without registry
# access can point them at locally built images:
#   docker build --build-arg RUST_IMAGE=my/rust --build-arg RUNTIME_IMAGE=my/debian .
# Works with both BuildKit and the legacy builder (no RUN --mount).
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------- build ----
FROM ${RUST_IMAGE} AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# Dependency layer: manifests and the lockfile only, so this layer is rebuilt
# only when one of them changes. List every workspace member here.
COPY Cargo.toml Cargo.lock ./
COPY engine/Cargo.toml engine/
COPY runner/Cargo.toml runner/
COPY api/Cargo.toml api/
COPY tests/Cargo.toml tests/
# Cargo needs targets to load the workspace, so each member gets stub
# sources; then fetch every dependency and compile what the binary needs.
# That compile is best effort (a stub may not satisfy a manifest's explicit
# target paths): anything it misses is compiled by the real build below.
# The stub members' own artifacts are deleted so they are always rebuilt.
RUN set -eu; \
    members="engine runner api tests"; \
    for m in $members; do \
        mkdir -p "$m/src"; \
        : > "$m/src/lib.rs"; \
        echo 'fn main() {}' > "$m/src/main.rs"; \
    done; \
    cargo fetch --locked; \
    cargo build --release --locked --offline --keep-going -p slipway-api \
        || echo "stub dependency build incomplete; the real build finishes it"; \
    for m in $members; do rm -rf "$m/src"; done; \
    rm -rf target/release/.fingerprint/slipway-* target/release/build/slipway-* \
        target/release/deps/*slipway* target/release/slipway*

COPY . .
RUN cargo build --release --locked --offline -p slipway-api --bin slipway \
    && install -D -m 0755 target/release/slipway /out/slipway

# -------------------------------------------------------------- runtime ----
FROM ${RUNTIME_IMAGE}
RUN set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 slipway; \
    useradd --system --uid 10001 --gid slipway --home-dir /var/lib/slipway \
        --no-create-home --shell /usr/sbin/nologin slipway; \
    mkdir -p /var/lib/slipway; \
    chown slipway:slipway /var/lib/slipway

COPY --from=build /out/slipway /usr/local/bin/slipway

ENV SLIPWAY_DATA_DIR=/var/lib/slipway
VOLUME /var/lib/slipway
WORKDIR /var/lib/slipway
USER slipway
ENTRYPOINT ["slipway"]
