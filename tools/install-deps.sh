#!/usr/bin/env bash
# Install what troupe needs to build and test, from Debian's packages, when
# it is missing, plus any package named on the command line (tools/fuzz.sh
# adds clang). Safe to run again: it installs only what is absent.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libck-dev libmsgpack-dev libcriterion-dev clang-format cppcheck
      python3
      "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo for apt-get" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
