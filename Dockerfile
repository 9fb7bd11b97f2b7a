# syntax=docker/dockerfile:1
# spark-admission image for Docker users: a static binary and nothing else, run as a numeric
# non-root user. Its final stage is release/Containerfile's, which CI builds offline and checks
# (tests/image/check.sh) and the release workflow publishes; tests/image.rs keeps them the same.
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" -t registry.example.com/spark-admission:0.1.0 .

# --- build ---------------------------------------------------------------------------------
# 1.89 is the crate's rust-version. crt-static links glibc into the binary, so the image needs
# no libc; with --target the flag applies to the binary only, not to build scripts.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
# The build context has no .git (.dockerignore): the revision comes in as a build argument.
ARG REVISION=unknown
# Cache mounts keep the registry and target dir between builds; the binary is copied out of
# the cached target dir because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    triple="$(uname -m)-unknown-linux-gnu" \
    && SPARK_ADMISSION_REVISION="$REVISION" RUSTFLAGS="-C target-feature=+crt-static" \
       cargo build --release --locked --target "$triple" --bin spark-admission \
    && install -D -m 0555 "target/$triple/release/spark-admission" /out/spark-admission

# --- run -----------------------------------------------------------------------------------
FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="spark-admission" \
      org.opencontainers.image.description="Policy-driven mutating admission webhook for Apache Spark pods" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/spark-admission /spark-admission
# Numeric, so Kubernetes can verify runAsNonRoot without a passwd file; the Deployment's uid.
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/spark-admission"]
CMD ["serve"]
