#!/usr/bin/env bash
# Install the given Debian packages with apt-get (through sudo when not root). Nothing to do
# without arguments. Shared by the project's and the benchmarks' dependency scripts.
set -euo pipefail
if [[ $# -eq 0 ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
        echo "please install: $* (apt-get install $*)" >&2; exit 1
    fi
else
    SUDO=
fi
echo "installing $*" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
