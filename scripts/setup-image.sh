#!/usr/bin/env bash
# Installs what scripts/build-image.sh and tests/cli/deploy_image.sh need to
# build and run the serve image without a Docker daemon: buildah and
# debootstrap (Debian 12 packages). Needs root or sudo for apt-get.
set -euo pipefail
missing=()
for p in buildah debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
echo "setup-image: $(buildah --version), debootstrap $(dpkg-query -W -f='${Version}' debootstrap)"
