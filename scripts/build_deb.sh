#!/usr/bin/env bash
# Builds the Debian package from an already-built release binary (`make deb`
# builds it first). Generated assets (units for /usr/bin and the system user,
# completions, man pages) are staged next to the binary, where the asset
# paths of [package.metadata.deb] in Cargo.toml point.
#   scripts/build_deb.sh CARGO_DEB RELEASE_BINARY [OUTPUT_DIR [CARGO_DEB_FLAGS...]]
set -euo pipefail

cargo_deb=${1:?usage: build_deb.sh CARGO_DEB RELEASE_BINARY [OUTPUT_DIR]}
bin=${2:?usage: build_deb.sh CARGO_DEB RELEASE_BINARY [OUTPUT_DIR]}
root=$(cd "$(dirname "$0")/.." && pwd)
release_dir=$(cd "$(dirname "$bin")" && pwd)
out=${3:-$release_dir/../debian}
shift 3 || shift $#
stage=$release_dir/deb-assets
# unit-scripts in Cargo.toml: a folder of the checkout, not of the target.
units=$root/target/deb-units

# cargo-deb maps target/release/ to the real target folder; it must be the
# one this binary is in.
case "$release_dir" in
*/release) ;;
*) echo "build_deb.sh: $bin is not in a release folder" >&2; exit 2 ;;
esac

rm -rf "$stage" "$units"
mkdir -p "$stage/completions" "$stage/man" "$units"
"$bin" completions bash >"$stage/completions/upscaled"
"$bin" completions zsh >"$stage/completions/_upscaled"
"$bin" completions fish >"$stage/completions/upscaled.fish"
"$bin" manpages "$stage/man"
gzip -9n "$stage"/man/*.1

# The checkout's units run /usr/local/bin/upscaled as a dynamic user; the
# package installs /usr/bin/upscaled and owns a static `upscaled` user, so
# models fetched into /var/lib/upscaled/models keep their owner.
for unit in upscaled.service upscaled-worker.service; do
    sed -e 's|/usr/local/bin/upscaled|/usr/bin/upscaled|g' \
        -e 's|^DynamicUser=yes$|User=upscaled\nGroup=upscaled|' \
        "$root/systemd/$unit" >"$units/$unit"
    if grep -q -e DynamicUser -e /usr/local/bin "$units/$unit"; then
        echo "build_deb.sh: systemd/$unit changed shape; update this script" >&2
        exit 1
    fi
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
# --no-build: the binary is the one given (built with the checkout's
# features). --strip: the release profile keeps line tables for backtraces
# (debug = 1), which would make the package six times larger.
cd "$root"
CARGO_TARGET_DIR=$(dirname "$release_dir") "$cargo_deb" --no-build --strip --output "$out" "$@"
