#!/usr/bin/env bash
# Installs bee's build dependencies (Debian 12 packages) and builds it in ./build.
# Safe to re-run. Needs root or sudo for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

# libopenmpi-dev / openmpi-bin are optional: data-parallel `mpirun bee train`; libyaml-dev is optional:
# `bee eval --models MODELS.yaml`.
pkgs=(build-essential cmake pkg-config libjansson-dev libcmocka-dev libsqlite3-dev libmicrohttpd-dev libyaml-dev clang libclang-rt-14-dev
      libopenmpi-dev openmpi-bin)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
echo "setup: built build/bee"
