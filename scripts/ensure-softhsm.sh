#!/usr/bin/env bash
# Makes sure the SoftHSM2 PKCS#11 module and softhsm2-util are present (Debian/Ubuntu package
# softhsm2). Installs them when running as root with apt-get; otherwise stops with what to install.
set -euo pipefail
have_module() {
  for f in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
           /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    [ -f "$f" ] && return 0
  done
  return 1
}
if have_module && command -v softhsm2-util >/dev/null 2>&1; then exit 0; fi
if [ -n "${QKMS_PKCS11_MODULE:-}" ] && [ "${1:-}" = "--runtime" ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "qkms: installing SoftHSM2 (Debian package softhsm2)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq softhsm2 >/dev/null
  have_module && exit 0
fi
echo "qkms: SoftHSM2 is missing. Install the Debian/Ubuntu package 'softhsm2' (sudo apt-get install -y softhsm2)," >&2
echo "      or set QKMS_PKCS11_MODULE to your HSM's PKCS#11 library." >&2
exit 1
