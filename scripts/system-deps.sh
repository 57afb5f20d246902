#!/usr/bin/env bash
# Installs the Debian packages turnout's demo, tests and benchmarks use, when they are missing.
# Needs root (or sudo); prints what it installs.
set -euo pipefail
# libmariadb-dev: MariaDB Connector/Python, a test client, builds against it.
# iproute2 and nftables: the multi-host lab (`turnout sandbox up --hosts`).
# chromium (and a font): the console's tests drive it headless through Playwright.
# jq, curl: the Orchestrator API tests pipe answers through orchestrator-client's jq filters.
want=(mariadb-server mariadb-client sysbench haproxy etcd-server iproute2 nftables libdbd-mariadb-perl build-essential
      python3-dev libmariadb-dev chromium fonts-dejavu-core jq curl)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Packaged services must not start on install: turnout runs its own servers.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
