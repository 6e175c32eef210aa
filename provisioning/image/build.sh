#!/usr/bin/env bash
# Build a flashable ript-phone image with Raspberry Pi's rpi-image-gen (docs/install.md).
#   provisioning/image/build.sh [DEVICE]     DEVICE: rpi5 (default), rpi4, rpizero2w, rpi3
# Needs an arm64 Debian 12 / Raspberry Pi OS bookworm host with rpi-image-gen checked out
# and its dependencies installed (its install_deps.sh), and RPI_IMAGE_GEN pointing at it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DEVICE=${1:-rpi5}
case "$DEVICE" in
    rpi5|rpi4|rpizero2w|rpi3) ;;
    *) echo "build.sh: unknown device $DEVICE (rpi5, rpi4, rpizero2w, rpi3)" >&2; exit 2 ;;
esac
if [ "$(dpkg --print-architecture)" != "arm64" ]; then
    echo "build.sh: build the image on an arm64 host (a Pi 4/5 or an arm64 server):" >&2
    echo "  the .deb inside it is built for the host's architecture" >&2
    exit 2
fi
GEN=${RPI_IMAGE_GEN:-}
if [ -z "$GEN" ] || [ ! -x "$GEN/rpi-image-gen" ]; then
    echo "build.sh: set RPI_IMAGE_GEN to a checkout of rpi-image-gen (with its install_deps.sh run)" >&2
    exit 2
fi
mkdir -p "$HERE/pkgs"
rm -f "$HERE/pkgs/"*.deb
"$ROOT/provisioning/deb/build.sh" "$HERE/pkgs"
config="$HERE/config/ript-phone-$DEVICE.yaml"
sed "s/^  layer: rpi5$/  layer: $DEVICE/" "$HERE/config/ript-phone.yaml" > "$config"
trap 'rm -f "$config"' EXIT
cd "$HERE"
"$GEN/rpi-image-gen" build -S "$HERE" -c "ript-phone-$DEVICE.yaml"
