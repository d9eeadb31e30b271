#!/usr/bin/env bash
# Makes sure the SoftHSM2 PKCS#11 module and softhsm2-util are present (Debian/Ubuntu package
# softhsm2), and for the tests (without --runtime) OpenSC's pkcs11-tool too (package opensc): the
# suite reads the token with it, independently of QKMS. Installs what is missing when running as
# root with apt-get; otherwise stops with what to install.
set -euo pipefail
have_module() {
  for f in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    [ -f "$f" ] && return 0
  done
  return 1
}
runtime=false
[ "${1:-}" = "--runtime" ] && runtime=true
packages=()
if ! { have_module && command -v softhsm2-util >/dev/null 2>&1; }; then
  if [ -n "${QKMS_PKCS11_MODULE:-}" ] && $runtime; then :; else packages+=(softhsm2); fi
fi
if ! $runtime && ! command -v pkcs11-tool >/dev/null 2>&1; then packages+=(opensc); fi
[ ${#packages[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "qkms: installing ${packages[*]} (Debian packages)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${packages[@]}" >/dev/null
  exit 0
fi
echo "qkms: missing Debian/Ubuntu packages: ${packages[*]} (sudo apt-get install -y ${packages[*]})." >&2
echo "      softhsm2 is the embedded token (or set QKMS_PKCS11_MODULE to your HSM's PKCS#11 library); opensc's pkcs11-tool reads the token in the tests." >&2
exit 1
