#!/usr/bin/env bash
# Install the Debian packages the tests and benchmarks talk to, if they are missing.
set -euo pipefail
packages=()
command -v storescu >/dev/null || packages+=(dcmtk)
command -v dciodvfy >/dev/null || packages+=(dicom3tools)
# The browser tests drive the system Chromium (Playwright with executable_path).
command -v chromium >/dev/null || packages+=(chromium)
command -v chromedriver >/dev/null || packages+=(chromium-driver)
if [[ ${#packages[@]} -eq 0 ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
        echo "please install: ${packages[*]} (apt-get install ${packages[*]})" >&2; exit 1
    fi
else
    SUDO=
fi
echo "installing ${packages[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
