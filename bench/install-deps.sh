#!/usr/bin/env bash
# Install what the benchmarks compare pedipacs with, if it is missing: Orthanc and its DICOMweb
# plugin (Debian packages orthanc, orthanc-dicomweb). Only the binary and the plugin's .so are
# used: the benchmarks start Orthanc themselves, with their own configuration.
set -euo pipefail
packages=()
command -v Orthanc >/dev/null || [[ -x /usr/sbin/Orthanc ]] || packages+=(orthanc)
[[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]] || packages+=(orthanc-dicomweb)
# The package's service is never started here (no init system, or policy-rc.d says no).
bash "$(dirname "$0")/../scripts/apt-install.sh" "${packages[@]}"
