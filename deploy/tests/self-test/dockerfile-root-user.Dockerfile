# Broken on purpose for `scripts/validate-deploy.sh --self-test`: the runtime stage never leaves
# root.
# expect: the runtime stage must end as USER 10001:10001
FROM python:3.12.12-slim-trixie AS planner
COPY . /src
RUN python3 /src/scripts/cargo-recipe.py /src /recipe

FROM rust:1.95.0-slim-trixie AS deps
COPY --from=planner /recipe/ ./
RUN cargo build --release --locked --bin shopmind

FROM deps AS build
COPY . .
RUN cargo build --release --locked --bin shopmind

FROM debian:13.4-slim
COPY --from=build /target/release/shopmind /usr/local/bin/shopmind
ENTRYPOINT ["/usr/local/bin/shopmind"]
