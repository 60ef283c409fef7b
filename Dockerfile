# One image for every shopmind service: `docker run shopmind <subcommand>`.
# Build: docker build -t shopmind .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip unzip && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN SHOPMIND_SETUP_SERVERS=0 scripts/setup.sh \
 && cargo build --release --locked --bin shopmind \
 && mkdir -p /out/lib \
 && cp target/release/shopmind /out/ \
 && cp -L .cache/onnxruntime/libonnxruntime.so /out/lib/libonnxruntime.so

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin shopmind \
 && mkdir -p /var/lib/shopmind/models && chown shopmind /var/lib/shopmind/models
COPY --from=build /out/shopmind /usr/local/bin/shopmind
COPY --from=build /out/lib/libonnxruntime.so /usr/local/lib/shopmind/libonnxruntime.so
ENV ORT_DYLIB_PATH=/usr/local/lib/shopmind/libonnxruntime.so \
    SHOPMIND__MODELS__DIR=/var/lib/shopmind/models \
    SHOPMIND__GATEWAY__LISTEN=0.0.0.0:50051 \
    SHOPMIND__METRICS__LISTEN=0.0.0.0:9090 \
    SHOPMIND__LOG__FORMAT=json
USER 10001
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/shopmind"]
CMD ["all-in-one"]
