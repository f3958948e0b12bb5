# Two static binaries on distroless/static, non-root:
#   /quayctl-controller  the controller (ENTRYPOINT)
#   /quayctl-noop        copied into puller pods by the kubelet strategy's init container
# Static via glibc's crt-static on the gnu target (rustls, no OpenSSL): the same command `make build` runs.
#
# Default (`docker build .`): compile from source in rust:1.95-bookworm, ship on distroless/static.
# Offline, from what `make build` made (the real-node tests build this way; nothing is pulled):
#   docker build --build-arg BINARIES=prebuilt --build-arg BASE=scratch \
#     --build-arg PREBUILT_DIR=target/x86_64-unknown-linux-gnu/release .
# (.dockerignore lets exactly those two binaries of target/ into the context.) Needs BuildKit, which
# skips the stages the target does not use; no `# syntax=` line, so no frontend image is pulled.
ARG BASE=gcr.io/distroless/static-debian12:nonroot
ARG BINARIES=source

FROM docker.io/library/rust:1.95-bookworm AS source
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-gnu" \
 && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" --bins \
 && mkdir /out \
 && cp "target/$target/release/quayctl-controller" "target/$target/release/quayctl-noop" /out/

FROM scratch AS prebuilt
ARG PREBUILT_DIR=target/x86_64-unknown-linux-gnu/release
COPY ${PREBUILT_DIR}/quayctl-controller ${PREBUILT_DIR}/quayctl-noop /out/

FROM ${BINARIES} AS binaries

FROM ${BASE}
COPY --from=binaries /out/quayctl-controller /quayctl-controller
COPY --from=binaries /out/quayctl-noop /quayctl-noop
USER 65532:65532
ENTRYPOINT ["/quayctl-controller"]
