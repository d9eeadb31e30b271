#!/usr/bin/env bash
# Makes sure the programs the integration tests drive besides the tokens are present (Debian/Ubuntu
# packages), as ensure-softhsm.sh does for SoftHSM2:
#   chromium        - the headless browser of the web console test (playwright-core downloads none)
#   prometheus      - a real Prometheus scraping a gateway with deploy/prometheus.yml
#   docker-compose  - `docker-compose config` checks docker-compose.yml (no Docker engine is used)
#   awscli, python3-boto3, curl - unmodified clients of the client tests and the README examples
# Installs what is missing when running as root with apt-get. Otherwise it only prints what to
# install and exits 0: each test that needs one of them skips, printing the package's name
# (test/support/debian-tools.ts).
set -euo pipefail
have_cmd() { command -v "$1" >/dev/null 2>&1; }
packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
have_cmd prometheus || packages+=(prometheus)
have_cmd docker-compose || packages+=(docker-compose)
have_cmd aws || packages+=(awscli)
/usr/bin/python3 -c 'import boto3' >/dev/null 2>&1 || packages+=(python3-boto3)
have_cmd curl || packages+=(curl)
[ ${#packages[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && have_cmd apt-get; then
  echo "qkms: installing ${packages[*]} (Debian packages)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${packages[@]}" >/dev/null
  exit 0
fi
echo "qkms: test tools missing Debian/Ubuntu packages: ${packages[*]} (sudo apt-get install -y ${packages[*]})." >&2
echo "      The tests that drive them will be skipped, each naming its package." >&2
exit 0
