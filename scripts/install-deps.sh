#!/usr/bin/env bash
# Installs shardflow's build and test dependencies from Debian 12 packages.
# Idempotent: does nothing when everything is already installed.
# Slurm and munge (for the tests of the slurm/ batch scripts) are optional:
# if they cannot be installed, those tests skip and everything else runs.
set -euo pipefail

packages=(gcc make cmake pkg-config
          libopenmpi-dev openmpi-bin
          libhdf5-openmpi-dev hdf5-tools
          libcmocka-dev libyaml-dev libxxhash-dev xxhash
          python3 bc)
optional=(slurm-wlm munge)

missing_from() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
mapfile -t missing < <(missing_from "${packages[@]}")
mapfile -t missing_optional < <(missing_from "${optional[@]}")
if [ "${#missing[@]}" -eq 0 ] && [ "${#missing_optional[@]}" -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "${#missing_optional[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing_optional[*]} (optional)"
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
         "${missing_optional[@]}" >/dev/null; then
    echo "install-deps: warning: could not install ${missing_optional[*]}; the slurm tests will be skipped" >&2
  fi
fi
echo "install-deps: done"
