# trunkplane's image, built from the wheel: the first stage builds the wheel from this
# checkout, the second installs only that wheel (and its dependencies) into a slim Python.
#   docker build -t trunkplane:latest .        (infra/deploy/compose.yaml builds it too)
FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY domain domain
COPY projections projections
COPY sipagent sipagent
COPY protos protos
COPY infra infra
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir /wheels/trunkplane-*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /data trunkplane \
    && mkdir -p /data && chown trunkplane /data
USER trunkplane
ENV TRUNKPLANE_DATA=/data
VOLUME ["/data"]
# gRPC, Prometheus metrics, SIP (agents)
EXPOSE 50051 9464 5062/udp
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["trunkplane", "health"]
ENTRYPOINT ["trunkplane"]
CMD ["serve"]
