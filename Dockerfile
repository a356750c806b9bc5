# Builds the portcullis binary and runs it as a non-root user on a minimal base.
# Works with the classic builder (docker-compose 1.29) and BuildKit alike.

# 1. The build's skeleton: every Cargo manifest, the lock file and build scripts as they are, and
#    `fn main() {}` at every target root (src/main.rs, src/lib.rs, src/bin/, benches/, examples/,
#    and any `path = "....rs"` a manifest names; tests/ are not built here). This stage reruns on
#    every change, but its output changes only when a manifest or a target root's name does, so
#    the dependency layer below stays cached across source edits.
FROM rust:1-bookworm AS skeleton
WORKDIR /src
COPY . .
RUN set -eu; mkdir /skeleton; \
    find . -path ./target -prune -o -type f \
      \( -name Cargo.toml -o -name Cargo.lock -o -name build.rs -o -name 'rust-toolchain*' -o -path '*/.cargo/config*' \) \
      -print | while read -r f; do cp --parents "$f" /skeleton/; done; \
    find . -path ./target -prune -o -type f -name Cargo.toml -print | while read -r manifest; do \
      d="$(dirname "$manifest")"; \
      ( cd "$d"; \
        for r in src/main.rs src/lib.rs; do [ ! -f "$r" ] || echo "$r"; done; \
        for t in src/bin benches examples; do \
          [ ! -d "$t" ] || find "$t" -name '*.rs' \( -path "$t/*/main.rs" -o ! -path "$t/*/*" \); \
        done; \
        sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' Cargo.toml; \
      ) | while read -r root; do \
        mkdir -p "/skeleton/$d/$(dirname "$root")"; echo 'fn main() {}' >"/skeleton/$d/$root"; \
      done; \
    done

# 2. Dependencies, from the skeleton only (cached while the manifests stay the same), then the
#    real sources. The sources are touched so that cargo rebuilds this crate over the dummy one.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY --from=skeleton /skeleton/ ./
RUN cargo build --release --locked --bin portcullis
COPY . .
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin portcullis \
 && strip target/release/portcullis

FROM debian:bookworm-slim
# CA certificates: the S3 client verifies an https:// endpoint against the system roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 portcullis \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/portcullis portcullis \
 && mkdir -p /var/lib/portcullis && chown portcullis:portcullis /var/lib/portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
# docker-compose.yml may run it as another uid (PORTCULLIS_UID, the owner of the secret files).
USER 10001:10001
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve"]
