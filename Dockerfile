# syntax=docker/dockerfile:1
# spark-admission image: the binary and nothing else, running as a numeric non-root user.
# Not built in this repository's CI (no Docker engine there); see README, "Deploying".
#   docker build -t registry.example.com/spark-admission:0.1.0 .

# --- build ---------------------------------------------------------------------------------
# Debian 12 (glibc) builder, matching the distroless runtime below; the C parts (ring, mimalloc)
# build with its stock toolchain. 1.89 is the crate's rust-version.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out of
# the cached target dir because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin spark-admission \
    && install -D -m 0555 target/release/spark-admission /out/spark-admission

# --- run -----------------------------------------------------------------------------------
# distroless "cc": glibc and libgcc only; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/spark-admission /spark-admission
# 65532 is distroless's "nonroot"; numeric so Kubernetes can verify runAsNonRoot.
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/spark-admission"]
CMD ["serve"]
