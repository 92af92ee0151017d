#!/usr/bin/env bash
# Install the Debian packages the tests and benchmarks talk to, if they are missing.
set -euo pipefail
packages=()
command -v storescu >/dev/null || packages+=(dcmtk)
command -v dciodvfy >/dev/null || packages+=(dicom3tools)
# The browser tests drive the system Chromium (Playwright with executable_path).
command -v chromium >/dev/null || packages+=(chromium)
command -v chromedriver >/dev/null || packages+=(chromium-driver)
bash "$(dirname "$0")/apt-install.sh" "${packages[@]}"
