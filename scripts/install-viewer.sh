#!/usr/bin/env bash
# Fetch the OHIF viewer's published build (npm package @ohif/app, pinned below) into a folder
# that pedipacs serves under /viewer. Usage: scripts/install-viewer.sh [TARGET] (default var/viewer).
#
# The folder holds the package's dist/ exactly as published; pedipacs rewrites the public path and
# generates app-config.js when it serves them (src/pedipacs/web/viewer.py). Nothing here is
# committed. Quick when the pinned build is already in place (a stamp file records it).
#
# To update: set OHIF_VERSION and OHIF_INTEGRITY from `npm view @ohif/app@X.Y.Z dist.integrity`,
# then run `make viewer` and the viewer tests.
set -euo pipefail

OHIF_PACKAGE="@ohif/app"
OHIF_VERSION="3.13.2"
OHIF_INTEGRITY="sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="

target=${1:-var/viewer}
target=${target%/}
stamp_name=.pedipacs-viewer-version
wanted="$OHIF_PACKAGE@$OHIF_VERSION $OHIF_INTEGRITY"

if [[ -f $target/$stamp_name && -f $target/index.html && $(<"$target/$stamp_name") == "$wanted" ]]; then
    exit 0
fi

fail() {
    echo "install-viewer: $*" >&2
    exit 1
}

command -v npm >/dev/null || fail "npm is missing: install Node.js and npm (Debian: apt-get install npm)"
command -v node >/dev/null || fail "node is missing: install Node.js (Debian: apt-get install nodejs)"

parent=$(dirname "$target")
mkdir -p "$parent"
# Staging beside the target, so the final move is a rename on the same file system.
staging=$(mktemp -d "$parent/.viewer-staging.XXXXXX")
download=$(mktemp -d)
cleanup() {
    rm -rf "$staging" "$download"
}
trap cleanup EXIT

echo "install-viewer: fetching $OHIF_PACKAGE@$OHIF_VERSION into $target" >&2
# `npm pack` downloads the published tarball only (no dependencies, no install scripts).
tarball_name=$(cd "$download" && npm pack --loglevel=error \
    "$OHIF_PACKAGE@$OHIF_VERSION" | tail -n 1) || fail "npm pack $OHIF_PACKAGE@$OHIF_VERSION failed"
tarball=$download/$tarball_name
[[ -f $tarball ]] || fail "npm pack did not produce the tarball ($tarball_name)"

actual=$(node -e '
const crypto = require("crypto");
const data = require("fs").readFileSync(process.argv[1]);
process.stdout.write("sha512-" + crypto.createHash("sha512").update(data).digest("base64"));
' "$tarball")
[[ $actual == "$OHIF_INTEGRITY" ]] ||
    fail "integrity mismatch for $tarball_name: expected $OHIF_INTEGRITY, got $actual"

# -m: files get the extraction time, not the tarball's fixed 1985 date (HTTP validators use it).
tar -xzf "$tarball" -C "$download" --no-same-owner -m package/dist
[[ -f $download/package/dist/index.html && -f $download/package/dist/app-config.js ]] ||
    fail "$tarball_name has no built dist/ (index.html, app-config.js)"

rmdir "$staging"
mv "$download/package/dist" "$staging"
printf '%s\n' "$wanted" >"$staging/$stamp_name"

if [[ -e $target ]]; then
    old=$(mktemp -d "$parent/.viewer-old.XXXXXX")
    mv "$target" "$old/"
    mv "$staging" "$target"
    rm -rf "$old"
else
    mv "$staging" "$target"
fi
echo "install-viewer: $OHIF_PACKAGE@$OHIF_VERSION ready in $target" >&2
