# One image per architecture, published as an OCI index for linux/amd64 and linux/arm64. It is both
# the controller and the puller pods' helper (HELPER_IMAGE defaults to the controller's own image),
# static, on distroless/static, non-root:
#   /quayctl-controller  the controller (ENTRYPOINT)
#   /quayctl-noop        copied into puller pods by the kubelet strategy's init container (C, static)
#
# Both architectures, from source, cross-compiled on the build host (no emulation of rustc):
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/quayctl-controller:TAG --push .
# One architecture (`docker build .` builds the host's).
#
# Offline, from what `make build` made (the real-node tests build this way; nothing is pulled):
#   docker build --platform linux/amd64 --build-arg BINARIES=prebuilt --build-arg BASE=scratch .
# takes every file of target/prebuilt/<arch>/ (hack/images.sh fills it from `make build`). A machine
# without the aarch64 Rust standard library builds the arm64 image from the arm64 no-op alone: a
# helper-only image (no controller; the CronJob pins the controller to amd64), enough for arm64 nodes
# to run pullers. BuildKit skips the stages the target does not use; no `# syntax=` line, so no
# frontend image is pulled.
ARG BASE=gcr.io/distroless/static-debian12:nonroot
ARG BINARIES=source

FROM --platform=$BUILDPLATFORM docker.io/library/rust:1.95-bookworm AS source
ARG TARGETARCH
WORKDIR /src
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN case "$TARGETARCH" in \
      amd64) echo x86_64 > /arch ;; \
      arm64) echo aarch64 > /arch ;; \
      *) echo "unsupported TARGETARCH=$TARGETARCH (amd64, arm64)" >&2; exit 1 ;; \
    esac \
 && arch=$(cat /arch) \
 && if [ "$arch" != "$(uname -m)" ]; then \
      apt-get update -qq && apt-get install -qq -y --no-install-recommends "gcc-${arch//_/-}-linux-gnu" "libc6-dev-${TARGETARCH}-cross" \
      && rustup target add "$arch-unknown-linux-gnu"; \
    fi
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=target-$TARGETARCH \
    arch=$(cat /arch); target="$arch-unknown-linux-gnu"; cc=gcc \
 && if [ "$arch" != "$(uname -m)" ]; then cc="${arch}-linux-gnu-gcc"; fi \
 && export "CARGO_TARGET_${arch^^}_UNKNOWN_LINUX_GNU_LINKER=$cc" \
 && RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" --bins \
 && mkdir /out \
 && cp "target/$target/release/quayctl-controller" /out/ \
 && "$cc" -static -Os -s -Wall -Wextra -Werror -o /out/quayctl-noop src/noop/quayctl-noop.c

FROM scratch AS prebuilt
ARG TARGETARCH
COPY target/prebuilt/${TARGETARCH}/ /out/

FROM ${BINARIES} AS binaries

FROM ${BASE}
COPY --from=binaries /out/ /
USER 65532:65532
ENTRYPOINT ["/quayctl-controller"]
