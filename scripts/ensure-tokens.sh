#!/usr/bin/env bash
# Makes sure the three extra PKCS#11 tokens the tests start are present (Debian/Ubuntu packages):
#   opencryptoki's soft token  - opencryptoki, libopencryptoki0 (daemon pkcsslotd, pkcsconf)
#   NSS softoken               - libnss3 (libsoftokn3.so), libnss3-tools (certutil)
#   tpm2-pkcs11 on swtpm       - swtpm, swtpm-tools, libtpm2-pkcs11-1, libtpm2-pkcs11-tools
#                                (tpm2_ptool), tpm2-tools, libtss2-tcti-swtpm0, and tpm2-abrmd with
#                                libtss2-tcti-tabrmd0 and dbus-daemon: swtpm has no resource manager, and
#                                without one tpm2-pkcs11 runs out of TPM object slots after a key or two
# Installs what is missing when running as root with apt-get. Otherwise it only prints what to
# install and exits 0: these tokens are optional, and the tests that need one skip with the package's
# name (test/support/tokens/).
set -euo pipefail
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
have_file() { for f in "$@"; do [ -e "$f" ] && return 0; done; return 1; }
have_cmd() { command -v "$1" >/dev/null 2>&1; }
lib=/usr/lib/$multiarch
packages=()
have_cmd pkcsconf && have_cmd pkcsslotd || packages+=(opencryptoki)
have_file "$lib/opencryptoki/libopencryptoki.so" "$lib/libopencryptoki.so.0" || packages+=(libopencryptoki0)
have_file "$lib/libsoftokn3.so" "$lib/nss/libsoftokn3.so" || packages+=(libnss3)
have_cmd certutil || packages+=(libnss3-tools)
have_cmd swtpm || packages+=(swtpm)
have_cmd swtpm_setup || packages+=(swtpm-tools)
have_file "$lib/libtpm2_pkcs11.so.1" "$lib/libtpm2_pkcs11.so" || packages+=(libtpm2-pkcs11-1)
have_cmd tpm2_ptool || packages+=(libtpm2-pkcs11-tools)
have_cmd tpm2_startup || packages+=(tpm2-tools)
have_file "$lib/libtss2-tcti-swtpm.so.0" || packages+=(libtss2-tcti-swtpm0)
have_cmd tpm2-abrmd || packages+=(tpm2-abrmd)
have_file "$lib/libtss2-tcti-tabrmd.so.0" || packages+=(libtss2-tcti-tabrmd0)
have_cmd dbus-daemon || packages+=(dbus-daemon)
[ ${#packages[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = "0" ] && have_cmd apt-get; then
  echo "qkms: installing ${packages[*]} (Debian packages)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  exit 0
fi
echo "qkms: optional test tokens missing Debian/Ubuntu packages: ${packages[*]} (sudo apt-get install -y ${packages[*]})." >&2
echo "      The tests on opencryptoki, NSS softoken and tpm2-pkcs11 will be skipped." >&2
exit 0
