# syntax=docker/dockerfile:1
# kbwatch container image: a release build on Debian, then a slim Debian runtime with only the
# CA certificates and OpenSSL's runtime library (azure_identity's client-certificate credential).
#   docker build -t kbwatch:0.1.0 .
#   docker run --rm kbwatch:0.1.0 --version
# The image has no PostgreSQL server: set database.url (KBWATCH_DATABASE__URL).
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# No live database at build time: sqlx uses the committed offline query data, if any.
ENV SQLX_OFFLINE=true CARGO_TERM_COLOR=never
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin kbwatch \
 && install -m 0755 target/release/kbwatch /usr/local/bin/kbwatch

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 kbwatch \
 && useradd --system --uid 10001 --gid kbwatch --home-dir /var/lib/kbwatch --create-home \
      --shell /usr/sbin/nologin kbwatch
COPY --from=build /usr/local/bin/kbwatch /usr/local/bin/kbwatch
USER 10001:10001
WORKDIR /var/lib/kbwatch
# The binary starts and links in this image, as the user it runs as.
RUN ["/usr/local/bin/kbwatch", "--version"]
ENV KBWATCH_CONFIG=/etc/kbwatch/kbwatch.toml \
    STATE_DIRECTORY=/var/lib/kbwatch
EXPOSE 9464
LABEL org.opencontainers.image.title="kbwatch" \
      org.opencontainers.image.description="History of missing Windows security updates across a Defender for Endpoint fleet" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/kbwatch"]
CMD ["run"]
