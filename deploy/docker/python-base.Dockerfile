# A Debian base with python3 and its venv module, for building the images where no container registry can
# be reached (deploy/docker/build-local.sh): BASE_IMAGE is then a root filesystem made with debootstrap and
# `podman import`ed. Real users take python:3.11-slim-bookworm and never build this.
# A build may mount extra CA certificates (a TLS-inspecting proxy's) at /usr/local/share/ca-certificates:
# they join the system bundle, which pip is told to use.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
