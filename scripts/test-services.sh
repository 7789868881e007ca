#!/usr/bin/env bash
# Installs the real servers and tools the integration tests use: Prometheus (promtool), Alertmanager
# (amtool), PostgreSQL and docker-compose (its `config` check needs no engine), from Debian's packages; and
# for the container tests (tests/containers/) podman with runc and debootstrap, set up as docs/deploy.md
# says (runc: crun refuses cgroup v1 hybrid hosts; no default ulimits: podman's exceed what a nested host
# may set). For the console's browser tests (tests/browser/), Debian's Chromium (Playwright drives it through
# its executable_path: no browser download; the Python driver comes with the dev extra). Does nothing when
# they are already there.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# podman's pods (the container tests, podman-compose) need a pause binary, built into a local image.
command -v catatonit >/dev/null 2>&1 || missing+=(catatonit)
# Containers on one compose network find each other by name (CNI's dnsname plugin).
[ -e /usr/lib/cni/dnsname ] || missing+=(golang-github-containernetworking-plugin-dnsname)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
containers_conf=/etc/containers/containers.conf
if ! grep -qs '^default_ulimits' "$containers_conf"; then
  "${sudo[@]}" mkdir -p "$(dirname "$containers_conf")"
  if grep -qs '^\[containers\]' "$containers_conf"; then
    "${sudo[@]}" sed -i '/^\[containers\]/a default_ulimits = []' "$containers_conf"
  else
    printf '[containers]\ndefault_ulimits = []\n' | "${sudo[@]}" tee -a "$containers_conf" >/dev/null
  fi
fi
# runc for every podman command, podman-compose's included.
if ! grep -qs '^runtime' "$containers_conf"; then
  if grep -qs '^\[engine\]' "$containers_conf"; then
    "${sudo[@]}" sed -i '/^\[engine\]/a runtime = "runc"' "$containers_conf"
  else
    printf '[engine]\nruntime = "runc"\n' | "${sudo[@]}" tee -a "$containers_conf" >/dev/null
  fi
fi
[ ${#missing[@]} -eq 0 ] && exit 0

echo "test-services: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
