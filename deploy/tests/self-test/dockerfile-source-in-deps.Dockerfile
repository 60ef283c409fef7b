# Broken on purpose for `scripts/validate-deploy.sh --self-test`: the dependency stage copies the
# whole context, so every source change rebuilds every dependency.
# expect: copies from the build context: 'COPY . .'
FROM rust:1.95.0-slim-trixie AS deps
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin shopmind

FROM deps AS build
RUN cargo build --release --locked --bin shopmind

FROM debian:13.4-slim
COPY --from=build /src/target/release/shopmind /usr/local/bin/shopmind
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/shopmind"]
