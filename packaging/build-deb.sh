#!/usr/bin/env bash
# Build the plantsync Debian package (dh-virtualenv) from this source tree.
#
#   packaging/build-deb.sh [OUTDIR]      default OUTDIR: dist/
#
# The tree is copied into build/deb/ with packaging/debian as its debian/ directory, so the
# repository itself never gets a debian/ folder or build litter. Environment:
#   PLANTSYNC_VERSION   build as this (PEP 440) version instead of pyproject.toml's; the copy's
#                       pyproject.toml and plantsync/__init__.py are rewritten (used by the
#                       package test to make a newer build)
#   DEB_REVISION        Debian revision, default 1
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/dist}")
BUILD_DEPS=(debhelper dh-virtualenv python3.11 python3.11-venv build-essential dpkg-dev)

missing_build_deps() {
    local missing=()
    for package in "${BUILD_DEPS[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$package")
    done
    echo "${missing[@]}"
}

ensure_build_deps() {
    local missing
    missing=$(missing_build_deps)
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing build dependencies: $missing"
        apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        echo "Building the package needs: sudo apt-get install $missing" >&2
        exit 1
    fi
}

# PEP 440 -> Debian: pre-releases sort before the release with '~' (1.0rc1 -> 1.0~rc1).
debian_version() {
    echo "$1" | sed -E 's/^([0-9.]+)(a|b|rc|\.dev)/\1~\2/'
}

ensure_build_deps
version=${PLANTSYNC_VERSION:-$(sed -nE 's/^version = "(.*)"/\1/p' "$ROOT/pyproject.toml")}
deb_version="$(debian_version "$version")-${DEB_REVISION:-1}"
work="$ROOT/build/deb"
src="$work/plantsync-$version"
rm -rf "$work"
mkdir -p "$src" "$OUT"

# Only what the package is built from: no .venv, caches or tests.
cp -a "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/constraints.txt" "$ROOT/plantsync" "$src/"
mkdir -p "$src/packaging" "$src/docs"
cp -a "$ROOT/packaging/plantsync.service" "$ROOT/packaging/agent.env.example" "$src/packaging/"
cp -a "$ROOT/docs/install.md" "$src/docs/"
cp -a "$ROOT/packaging/debian" "$src/debian"
cp -a "$ROOT/packaging/plantsync.service" "$src/debian/plantsync.service"
find "$src" -name __pycache__ -prune -exec rm -rf {} +
if [ -n "${PLANTSYNC_VERSION:-}" ]; then
    sed -i -E "s/^version = \".*\"/version = \"$version\"/" "$src/pyproject.toml"
    sed -i -E "s/^__version__ = \".*\"/__version__ = \"$version\"/" "$src/plantsync/__init__.py"
fi
cat >"$src/debian/changelog" <<EOF
plantsync ($deb_version) stable; urgency=medium

  * Built from plantsync $version.

 -- plantsync maintainers <plantsync@localhost>  $(date -R)
EOF

echo "building plantsync $deb_version in $src"
started=$(date +%s)
(cd "$src" && dpkg-buildpackage -b -us -uc >"$work/build.log" 2>&1) || {
    tail -40 "$work/build.log" >&2
    echo "dpkg-buildpackage failed; the whole log: $work/build.log" >&2
    exit 1
}
deb=$(ls "$work"/plantsync_"${deb_version}"_*.deb)
mv "$deb" "$OUT/"
echo "built $OUT/$(basename "$deb") ($(du -h "$OUT/$(basename "$deb")" | cut -f1)," \
    "$(($(date +%s) - started)) s)"
