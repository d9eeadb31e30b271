#!/bin/sh
# Container entrypoint: initialises the SoftHSM2 token on the volume on first start, the way an
# operator prepares a real HSM partition, then runs the gateway against it with an explicit
# module, label and PIN file (the same configuration path a Luna or CloudHSM deployment uses).
# The user PIN is generated here and kept in the volume with mode 0600; the SO PIN is used once
# and not stored anywhere.
set -eu
DATA_DIR="${QKMS_DATA_DIR:-/var/lib/qkms}"
LABEL="${QKMS_PKCS11_TOKEN_LABEL:-qkms}"
PIN_FILE="${QKMS_PKCS11_PIN_FILE:-$DATA_DIR/pin}"
TOKEN_DIR="$(sed -n 's/^directories.tokendir *= *//p' "${SOFTHSM2_CONF:-/etc/softhsm/softhsm2.conf}")"

umask 077
mkdir -p "$TOKEN_DIR"
if [ ! -s "$PIN_FILE" ]; then
  pin="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
  so_pin="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
  softhsm2-util --init-token --free --label "$LABEL" --pin "$pin" --so-pin "$so_pin" >/dev/null
  printf '%s' "$pin" > "$PIN_FILE.tmp"
  mv "$PIN_FILE.tmp" "$PIN_FILE"
  echo "qkms-init-token: initialised SoftHSM2 token '$LABEL' in $TOKEN_DIR" >&2
fi
export QKMS_PKCS11_PIN_FILE="$PIN_FILE"
exec "$@"
