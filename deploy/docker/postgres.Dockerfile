# PostgreSQL from Debian's packages, for running the compose stack where Docker Hub cannot be reached
# (compose's POSTGRES_IMAGE; the default is the official postgres:16). Speaks the official image's
# environment: POSTGRES_USER, POSTGRES_DB and POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY deploy/docker/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
HEALTHCHECK --interval=5s --timeout=3s --retries=10 CMD ["pg_isready", "-h", "127.0.0.1"]
ENTRYPOINT ["postgres-entrypoint"]
