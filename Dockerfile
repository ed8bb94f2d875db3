# nodehealer: a static binary on a distroless, non-root base.
#
#   docker build -t <your-registry>/nodehealer:0.1.0 .
#
# The build stage compiles for musl, so the binary needs no C library at run time; rustls with
# ring is the only TLS and crypto code, so no OpenSSL either.

FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl \
 && apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY src ./src
COPY e2e ./e2e
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin nodehealer \
 && cp target/x86_64-unknown-linux-musl/release/nodehealer /nodehealer

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /nodehealer /nodehealer
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/nodehealer"]
