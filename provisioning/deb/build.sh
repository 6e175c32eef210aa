#!/usr/bin/env bash
# Build the Debian packages of this checkout (docs/install.md):
#   ript-phone_<version>_<arch>.deb     the phone daemon: the application and its pinned
#                                       dependencies in a virtual environment under /opt/ript-phone,
#                                       the unit, /etc/ript-phone/phone.toml (a conffile), the user
#   ript-provider_<version>_<arch>.deb  the reference provider's unit, configuration and user;
#                                       its program comes with ript-phone (the same venv)
# Usage: provisioning/deb/build.sh [OUT_DIR]          (default: dist/)
#        provisioning/deb/build.sh --update-lock      rewrite requirements.lock from pyproject.toml
# It builds with Debian's /usr/bin/python3 (the Python the package runs with), for the
# architecture dpkg reports: unchanged on a Pi (arm64) and here (amd64).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
LOCK="$HERE/requirements.lock"
PREFIX=/opt/ript-phone

[ -x "$PY" ] || { echo "build.sh: $PY is missing (apt-get install python3 python3-venv)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ "${1:-}" = "--update-lock" ]; then
    "$PY" -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install -q "$ROOT"
    {
        echo "# The runtime dependencies the .deb installs, pinned (provisioning/deb/build.sh --update-lock)."
        "$WORK/venv/bin/pip" freeze --exclude ript-phone --exclude lgpio
        # Only on a Pi (64-bit ARM): the pin factory gpiozero uses there (pyproject.toml).
        echo "lgpio==0.2.2.0 ; platform_machine == 'aarch64'"
    } > "$LOCK"
    echo "build.sh: wrote $LOCK"
    exit 0
fi

OUT=$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)
VERSION=$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$ROOT/pyproject.toml")
ARCH=$(dpkg --print-architecture)
PYVER=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')

# ---- ript-phone: the venv, built where it will live, then moved into the package tree.
# A venv records its own path (shebangs, pyvenv.cfg), so it is built under a scratch copy of
# $PREFIX and every reference to the scratch path is rewritten to $PREFIX.
PHONE="$WORK/ript-phone"
STAGE="$PHONE$PREFIX"
"$PY" -m venv "$STAGE"
"$STAGE/bin/pip" install -q --no-compile -r "$LOCK"
"$STAGE/bin/pip" install -q --no-compile --no-deps "$ROOT"
"$STAGE/bin/pip" check
"$STAGE/bin/pip" uninstall -q -y pip setuptools wheel 2>/dev/null || true
grep -rlI --null "$STAGE" "$STAGE" | xargs -0 -r sed -i "s#$STAGE#$PREFIX#g"
find "$STAGE" -name __pycache__ -prune -exec rm -rf {} +
# The bytecode ships compiled, for the installed paths (-s strips the scratch prefix). The
# daemon cannot write it (ProtectSystem=strict, /opt is root's), and without it every start
# compiles every module from source: seconds on a Pi, and about 5 MB more memory held for
# as long as the daemon runs (docs/performance.md, "the phone's memory in a call").
"$PY" -W ignore::SyntaxWarning -m compileall -q -j 0 -s "$PHONE" -p / "$STAGE/lib" >/dev/null
install -d "$PHONE/usr/bin" "$PHONE/lib/systemd/system" "$PHONE/etc/ript-phone" "$PHONE/DEBIAN" \
    "$PHONE/usr/share/doc/ript-phone"
ln -s "$PREFIX/bin/ript-phone" "$PHONE/usr/bin/ript-phone"
install -m 0644 "$ROOT/systemd/ript-phone.service" "$PHONE/lib/systemd/system/"
install -m 0640 "$HERE/phone.toml" "$PHONE/etc/ript-phone/phone.toml"
install -m 0644 "$ROOT/README.md" "$ROOT/docs/install.md" "$PHONE/usr/share/doc/ript-phone/"
cp "$LOCK" "$PHONE/usr/share/doc/ript-phone/requirements.lock"
echo "/etc/ript-phone/phone.toml" > "$PHONE/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$HERE/phone.$script" "$PHONE/DEBIAN/$script"
done
cat > "$PHONE/DEBIAN/control" <<CONTROL
Package: ript-phone
Version: $VERSION
Architecture: $ARCH
Maintainer: ript-phone developers <ript-phone@users.noreply.github.com>
Depends: python$PYVER, libasound2, libopus0, adduser, init-system-helpers (>= 1.50)
Section: comm
Priority: optional
Installed-Size: $(du -sk "$PHONE" | cut -f1)
Homepage: https://github.com/ript-phone/ript-phone
Description: desk phone that calls over RIPT (HTTP/3)
 The ript-phone daemon for a Raspberry Pi handset: log in by scanning a QR
 code, then make and take calls over RIPT with the hook switch, keypad, OLED
 and sound card. The application and its pinned Python dependencies live in
 a virtual environment under $PREFIX.
CONTROL

# ---- ript-provider: unit, configuration, user; the program is ript-phone's.
PROV="$WORK/ript-provider"
install -d "$PROV/usr/bin" "$PROV/lib/systemd/system" "$PROV/etc/ript-provider" "$PROV/DEBIAN"
ln -s "$PREFIX/bin/ript-provider" "$PROV/usr/bin/ript-provider"
install -m 0644 "$ROOT/systemd/ript-provider.service" "$PROV/lib/systemd/system/"
install -m 0640 "$HERE/provider.toml" "$PROV/etc/ript-provider/provider.toml"
echo "/etc/ript-provider/provider.toml" > "$PROV/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$HERE/provider.$script" "$PROV/DEBIAN/$script"
done
cat > "$PROV/DEBIAN/control" <<CONTROL
Package: ript-provider
Version: $VERSION
Architecture: $ARCH
Maintainer: ript-phone developers <ript-phone@users.noreply.github.com>
Depends: ript-phone (= $VERSION), mosquitto, adduser, init-system-helpers (>= 1.50)
Section: comm
Priority: optional
Homepage: https://github.com/ript-phone/ript-phone
Description: reference RIPT provider for ript-phone
 An HTTP/3 RIPT server with inbound calls, forking, MQTT shoulder taps, the
 OAuth device login and a simulated far end: for testing and demonstrating
 ript-phone. Not a production telephony service.
CONTROL

# xz at dpkg-deb's own level 6 unless DEB_XZ_LEVEL says (0-9): the tests build at 0,
# where the venv compresses several times faster into the same files.
for pkg in "$PHONE" "$PROV"; do
    name=$(basename "$pkg")
    dpkg-deb --root-owner-group --build -Zxz -z"${DEB_XZ_LEVEL:-6}" "$pkg" "$OUT/${name}_${VERSION}_${ARCH}.deb" >/dev/null
    echo "$OUT/${name}_${VERSION}_${ARCH}.deb"
done
