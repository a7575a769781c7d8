# uringcast in a container: a build stage with the Rust toolchain, and a small runtime stage
# with the binary alone (glibc and libgcc from the distroless "cc" image; no shell).
#
#   docker build -t uringcast .
#   docker run --rm -p 8080:8080 --security-opt seccomp=deploy/seccomp-io_uring.json \
#       -e URINGCAST_PUBLISH_KEY=change-me uringcast
#
# Docker >= 25 and containerd 2 block io_uring in their default seccomp profiles, and Podman's
# default profile does too: without the profile above the server cannot start (`docker run ...
# uringcast doctor` says so, and how to fix it). See "Containers" in docs/deploy.md.
#
# The base images are arguments so that a mirror (or a pinned digest) can stand in for them.
ARG RUST_IMAGE=docker.io/library/rust:1-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The workspace's manifests and every target they declare (cargo reads them all), nothing else.
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY bench bench
COPY benches benches
# Without the debug info the release profile keeps for profiling: 4 MB instead of 26 MB.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN cargo build --release --locked -p uringcast --bin uringcast \
 && cp target/release/uringcast /uringcast

FROM ${RUNTIME_IMAGE}
COPY --from=build /uringcast /usr/local/bin/uringcast
# 65532: the distroless "nonroot" user; nothing in the image needs root.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/uringcast"]
# All interfaces inside the container: the published port is the boundary. Keys and limits
# come from URINGCAST_* variables (`uringcast example-config` lists them).
CMD ["serve", "--listen", "0.0.0.0:8080"]
