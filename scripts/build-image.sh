#!/usr/bin/env bash
# Builds the bee serve image from deploy/Dockerfile without a Docker daemon:
# buildah with chroot isolation and vfs storage under .cache/containers
# (git-ignored). Where no registry is reachable (CI reaches only Debian's apt
# archive and npm), the debian:12-slim base is first made locally with
# debootstrap --variant=minbase from the Debian archive and tagged under the
# same name; with a registry, --pull-base fetches the official one instead.
#   scripts/build-image.sh [--tag NAME] [--pull-base]
# Needs root (buildah chroot isolation, debootstrap); scripts/setup-image.sh
# installs buildah and debootstrap. With Docker: docker build -f deploy/Dockerfile .
set -euo pipefail
cd "$(dirname "$0")/.."
tag=localhost/bee:latest pull_base=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) [ $# -ge 2 ] || { echo "build-image: --tag needs a name" >&2; exit 2; }; tag="$2"; shift 2 ;;
    --pull-base) pull_base=1; shift ;;
    -h|--help) sed -n 2,11p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { echo "build-image: $tool is not installed (scripts/setup-image.sh)" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "build-image: needs root (buildah chroot isolation, debootstrap)" >&2; exit 1; }

store="$PWD/.cache/containers"
bh() { buildah --root "$store/storage" --runroot "$store/run" --storage-driver vfs "$@"; }
base=docker.io/library/debian:12-slim

make_base() {
  local rootfs="$store/rootfs.tmp" ctr mnt
  rm -rf "$rootfs"
  echo "build-image: debootstrap --variant=minbase bookworm (the $base base, made locally)"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$store/debootstrap.log" 2>&1 ||
    { tail -20 "$store/debootstrap.log" >&2; echo "build-image: debootstrap failed (log: $store/debootstrap.log)" >&2; exit 1; }
  # what debian:12-slim also leaves out: package caches, apt lists, docs
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  ctr=$(bh from scratch)
  mnt=$(bh mount "$ctr")
  cp -a "$rootfs"/. "$mnt"/
  bh umount "$ctr" >/dev/null
  bh config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  bh commit --quiet --rm "$ctr" "$base" >/dev/null
  rm -rf "$rootfs"
}

mkdir -p "$store"
if [ "$pull_base" = 1 ]; then
  bh pull --quiet "$base" >/dev/null
elif ! bh inspect --type image "$base" >/dev/null 2>&1; then
  make_base
fi
echo "build-image: building $tag from deploy/Dockerfile"
bh bud --quiet --pull=never --isolation chroot --format docker -f deploy/Dockerfile -t "$tag" . >"$store/build.log" 2>&1 ||
  { tail -30 "$store/build.log" >&2; echo "build-image: build failed (log: $store/build.log)" >&2; exit 1; }
bh rmi --prune >/dev/null 2>&1 || true # earlier builds' untagged images
echo "build-image: built $tag (storage $store)"
