# ringkv: the `ringkv` binary (release build) in a small Debian runtime image.
# Build from the repository root: docker build -t ringkv:latest .
# deploy/README.md runs a 3-node cluster from it with deploy/compose.yaml.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ringkv-cli \
    && install -m 0755 target/release/ringkv /usr/local/bin/ringkv

FROM debian:bookworm-slim
# A fixed, unprivileged user; /certs and /var/lib/ringkv belong to it, so named volumes
# mounted there start out writable by the node.
RUN useradd --system --uid 10001 --home-dir /var/lib/ringkv ringkv \
    && mkdir -p /certs /var/lib/ringkv \
    && chown ringkv:ringkv /certs /var/lib/ringkv
COPY --from=build /usr/local/bin/ringkv /usr/local/bin/ringkv
COPY deploy/entrypoint.sh /usr/local/bin/ringkv-entrypoint
USER ringkv
WORKDIR /var/lib/ringkv
ENV RINGKV_CERTS=/certs \
    RINGKV_DIR=/var/lib/ringkv
VOLUME ["/var/lib/ringkv"]
# QUIC between nodes and clients (UDP), the HTTP API (TCP).
EXPOSE 7101/udp 8101/tcp
ENTRYPOINT ["/usr/local/bin/ringkv-entrypoint"]
CMD ["node"]
