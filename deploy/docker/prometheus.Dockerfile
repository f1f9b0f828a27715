# Prometheus for docker-compose.yml, from Debian's package (no registry needed), with the
# project's scrape configuration (deploy/prometheus/prometheus.yml).
#   docker build -f deploy/docker/prometheus.Dockerfile -t prometheus:latest deploy/prometheus
# (the build context is deploy/prometheus: the one file it copies)
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus && chown prometheus:prometheus /prometheus
COPY prometheus.yml /etc/prometheus/prometheus.yml
USER prometheus
EXPOSE 9090
VOLUME /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=0.0.0.0:9090", "--storage.tsdb.retention.time=7d"]
