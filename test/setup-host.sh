#!/usr/bin/env bash
# Installs the Debian packages the tests use, where missing (run as root; safe to re-run):
#   (package shellcheck) lints bootstrap/bootstrap.sh
#   systemd            systemd-analyze verify/security of the unit
#   openssh-client     ssh-keygen (the bootstrap's deploy key; the end-to-end test's git host)
#   passwd             useradd --prefix (the bootstrap's --root test mode)
#   git                the test git server
#   debootstrap, systemd-container, zstd, iproute2
#                      the end-to-end test: a Debian unstable root filesystem booted with
#                      systemd-nspawn (test/support/host-container.ts), cached as a zstd tarball
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have shellcheck || need+=(shellcheck)
have systemd-analyze || need+=(systemd)
have ssh-keygen || need+=(openssh-client)
have useradd || need+=(passwd)
have git || need+=(git)
have debootstrap || need+=(debootstrap)
have systemd-nspawn || need+=(systemd-container)
have zstd || need+=(zstd)
have ip || need+=(iproute2)
have nsenter || need+=(util-linux)
if ((${#need[@]} == 0)); then
  echo "test/setup-host.sh: every package the tests need is installed"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "test/setup-host.sh: missing ${need[*]}; run this as root (the tests need root too: nspawn, useradd --prefix, chown)" >&2
  exit 1
fi
echo "test/setup-host.sh: apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
