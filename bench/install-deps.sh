#!/usr/bin/env bash
# Install what the benchmarks compare pedipacs with, if it is missing: Orthanc and its DICOMweb
# plugin (Debian packages orthanc, orthanc-dicomweb). Only the binary and the plugin's .so are
# used: the benchmarks start Orthanc themselves, with their own configuration.
set -euo pipefail
packages=()
command -v Orthanc >/dev/null || [[ -x /usr/sbin/Orthanc ]] || packages+=(orthanc)
[[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]] || packages+=(orthanc-dicomweb)
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
# The package's service is never started here (no init system, or policy-rc.d says no).
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
