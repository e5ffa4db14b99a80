#!/usr/bin/env bash
# Installs the Debian packages ringio needs to build, test and benchmark.
# Idempotent: does nothing when everything is already installed.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config
  liburing-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libfmt-dev nlohmann-json3-dev libxxhash-dev
  util-linux attr acl valgrind python3
  libseccomp-dev clang libclang-rt-dev clang-tidy
  # Filesystem tests (tests/integration/filesystems_test.cpp): mkfs for the
  # loop-mounted images, and FUSE drivers for FAT-family images on kernels
  # built without vfat/exfat.
  xfsprogs btrfs-progs dosfstools exfatprogs exfat-fuse fusefat
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
