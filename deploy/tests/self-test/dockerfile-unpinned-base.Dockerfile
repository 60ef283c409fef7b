# Broken on purpose for `scripts/validate-deploy.sh --self-test`: a floating base (rust:1-bookworm
# moves with every Rust release), as the Dockerfile had it before 0.1.0's release work.
# expect: FROM ${RUST_IMAGE} = rust:1-bookworm: not pinned
ARG RUST_IMAGE=rust:1-bookworm
FROM ${RUST_IMAGE} AS build
COPY . .
RUN cargo build --release --locked --bin shopmind
