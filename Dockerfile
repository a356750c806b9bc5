# Builds the portcullis binary and runs it as a non-root user on a minimal base.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin portcullis && strip target/release/portcullis

FROM debian:bookworm-slim
# CA certificates: the S3 client verifies an https:// endpoint against the system roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/portcullis portcullis \
 && mkdir -p /var/lib/portcullis && chown portcullis /var/lib/portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
USER 10001
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve"]
