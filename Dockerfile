# syntax=docker/dockerfile:1
# Two static binaries on distroless/static, non-root:
#   /quayctl-controller  the controller (ENTRYPOINT)
#   /quayctl-noop        copied into puller pods by the kubelet strategy's init container
# Static via glibc's crt-static on the gnu target (rustls, no OpenSSL): the same command `make build` runs.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-gnu" \
 && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" --bins \
 && mkdir /out \
 && cp "target/$target/release/quayctl-controller" "target/$target/release/quayctl-noop" /out/

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/quayctl-controller /quayctl-controller
COPY --from=build /out/quayctl-noop /quayctl-noop
USER 65532:65532
ENTRYPOINT ["/quayctl-controller"]
