# One image for every shopmind service: `docker run shopmind:TAG <subcommand>`.
#   docker build -t shopmind:dev .       (BuildKit, Docker 23 or later; deploy/README.md, "The image")
#   scripts/image.sh --repository REGISTRY/shopmind --push
#                                        tags it from the crate version and the git commit, pushes
#                                        it, and records the digests (deploy/IMAGE_DIGEST)
#
# Stages:
#   planner      the dependency recipe: the manifests, Cargo.lock and stub targets (scripts/cargo-recipe.py)
#   deps         every dependency compiled from the recipe alone: reused while no manifest or the
#                lock file changes, however the source changes
#   build        the source on top, then the shopmind binary
#   onnxruntime  libonnxruntime.so from the onnxruntime wheel on PyPI (as scripts/setup.sh), sha256 checked
#   runtime      debian slim, the binary and ONNX Runtime, user 10001
#
# The runtime is debian slim rather than distroless cc, which would carry ONNX Runtime as well
# (libonnxruntime.so needs only glibc, libstdc++ and libgcc_s): the gateway's preStop hook runs
# /bin/sleep (deploy/k8s/base/gateway.yaml, the Helm chart), and debian publishes exact version
# tags to pin by. The stage installs nothing: no package manager runs in it.
#
# Bases are pinned by exact version tags. Their digests could not be resolved where this file was
# written (no registry reachable); scripts/image.sh resolves each tag to its digest, builds on
# those digests and records them.
# Override a base with --build-arg (e.g. RUST_IMAGE=rust:1.95.0-slim-trixie@sha256:...).
ARG RUST_IMAGE=rust:1.95.0-slim-trixie
ARG PYTHON_IMAGE=python:3.12.12-slim-trixie
ARG RUNTIME_IMAGE=debian:13.4-slim

FROM ${PYTHON_IMAGE} AS planner
WORKDIR /src
COPY . .
RUN python3 scripts/cargo-recipe.py /src /recipe

FROM ${RUST_IMAGE} AS deps
WORKDIR /src
# Only the recipe: no source of shopmind's own crates reaches this stage.
COPY --from=planner /recipe/ ./
RUN cargo build --release --locked --bin shopmind

FROM deps AS build
# The commit `shopmind --version` reports; .git is not in the build context (.dockerignore).
ARG GIT_COMMIT=unknown
COPY . .
# The stubs were compiled after the source's files were last written: make the real files newer,
# so cargo rebuilds shopmind's crates (and only them) from the source.
RUN find . -path ./target -prune -o -name '*.rs' -type f -exec touch {} + \
 && SHOPMIND_GIT_COMMIT="$GIT_COMMIT" cargo build --release --locked --bin shopmind \
 && install -D -m 0755 target/release/shopmind /out/shopmind

FROM ${PYTHON_IMAGE} AS onnxruntime
# Keep ORT_VERSION equal to scripts/setup.sh's (scripts/validate-deploy.sh checks it). The sha256
# of each wheel is PyPI's (cp312, manylinux_2_28).
ARG ORT_VERSION=1.31.1
ARG ORT_WHEEL_SHA256_AMD64=1f3dea47f2f0e5117c2404cea7d21fd253ae7836a3bf167a501cdfbb2600d536
ARG ORT_WHEEL_SHA256_ARM64=0b9a492176886992e0e875f06bc0367e333f5fff11711a2d642e18b02f3009cc
ARG TARGETARCH
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN set -eu; \
    case "${TARGETARCH:-amd64}" in \
      amd64) platform=manylinux_2_28_x86_64; sha256="$ORT_WHEEL_SHA256_AMD64" ;; \
      arm64) platform=manylinux_2_28_aarch64; sha256="$ORT_WHEEL_SHA256_ARM64" ;; \
      *) echo "no onnxruntime wheel pinned for $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    python3 -m pip download --no-deps --only-binary=:all: --implementation cp --python-version 3.12 \
      --abi cp312 --platform "$platform" "onnxruntime==$ORT_VERSION" -d /tmp/wheel; \
    wheel=$(ls /tmp/wheel/onnxruntime-*.whl); \
    echo "$sha256  $wheel" | sha256sum -c -; \
    python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); (lib,) = [n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so.")]; open("/libonnxruntime.so", "wb").write(z.read(lib))' "$wheel"; \
    rm -rf /tmp/wheel

FROM ${RUNTIME_IMAGE} AS runtime
# A system user with no home and no shell; the Kubernetes manifests run as the same 10001:10001.
RUN groupadd --system --gid 10001 shopmind \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin shopmind
# CA roots for https:// webhooks and TLS to NATS and Redis, from the builder (no apt in this stage).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=onnxruntime /libonnxruntime.so /usr/local/lib/shopmind/libonnxruntime.so
COPY --from=build /out/shopmind /usr/local/bin/shopmind
# Both set by scripts/image.sh; a plain `docker build` leaves them unknown.
ARG VERSION=unknown
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="shopmind" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$GIT_COMMIT" \
      org.opencontainers.image.licenses="Apache-2.0"
# Models come from the registry on NATS: the image needs no models directory.
ENV ORT_DYLIB_PATH=/usr/local/lib/shopmind/libonnxruntime.so \
    SHOPMIND__GATEWAY__LISTEN=0.0.0.0:50051 \
    SHOPMIND__METRICS__LISTEN=0.0.0.0:9090 \
    SHOPMIND__LOG__FORMAT=json
USER 10001:10001
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/shopmind"]
CMD ["all-in-one"]
