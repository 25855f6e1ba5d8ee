#!/usr/bin/env bash
# Classification on images that were never used for tuning: whole folders of
# Debian packages whose maintainers already sorted them by kind. Prints the
# share classed as expected for each set and lists the misses.
#
#   scripts/eval_unseen.sh [path/to/upscaled]
#
# Needs apt-get (no root: `apt-get download` into the cache) and python3.
# Results are in docs/smart-mode.md ("Images never seen").
set -euo pipefail

bin=${1:-target/release/upscaled}
cache=${UPSCALED_CACHE:-.cache}/unseen
mkdir -p "$cache"

# package, a path pattern inside it, the class every image there should get
sets=(
    "tuxpaint-stamps-default */stamps/*/cartoon/* illustration"
    "mate-backgrounds */backgrounds/mate/nature/* photo"
)

for set in "${sets[@]}"; do
    read -r package pattern expected <<<"$set"
    root="$cache/$package"
    if [ ! -d "$root" ]; then
        (cd "$cache" && apt-get download "$package" >/dev/null)
        dpkg-deb -x "$cache/$package"_*.deb "$root"
    fi
    find "$root" -type f -path "$pattern" \( -name '*.png' -o -name '*.jpg' \) -print0 |
        sort -z | xargs -0 "$bin" classify --json |
        python3 "$(dirname "$0")/unseen_summary.py" "$expected" "$package"
done
