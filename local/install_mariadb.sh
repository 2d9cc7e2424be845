#!/usr/bin/env bash
# Installs Debian's mariadb-server for the CDC source of the local stack (local/stack.sh starts
# its own server with its own data directory; the package's system service is not started).
# Idempotent: does nothing when mariadbd is already installed. Needs root (apt-get), as CI has.
set -euo pipefail
if PATH="/usr/sbin:/usr/bin:$PATH" command -v mariadbd >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install_mariadb: mariadbd is missing; run as root or: sudo apt-get install mariadb-server" >&2
  exit 1
fi
echo "installing Debian's mariadb-server (once)" >&2
guard=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  # Keep the package from starting the machine's own MariaDB service.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  guard=1
fi
trap '[ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null
