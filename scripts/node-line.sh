#!/usr/bin/env bash
# A Node.js of a given release line, from the npm registry alone: the package node-<os>-<arch>
# carries the official binaries together with include/node, the headers node-gyp needs to compile
# pkcs11js and better-sqlite3 (npm_config_nodedir points it there, so nothing else is downloaded).
# Installed once per line under $QKMS_NODE_HOME: by default ~/.cache/qkms/node/<line>, or for root
# /opt/qkms/node/<line> — root's home is private, and the suite runs some children as another user
# (nobody), which must be able to execute this node. A line is installed once and then kept as it
# is: delete its directory to take the line's newest release (its security fixes).
#
#   bash scripts/node-line.sh 24           prints the directory (bin/node only: npm stays the
#                                          one on PATH, run by this node)
#   eval "$(bash scripts/node-line.sh --env 24)"
#                                          puts that node first on PATH and sets npm_config_nodedir
#                                          in this shell; then `npm ci && npm start` as in the README
set -euo pipefail
env=false
if [ "${1:-}" = "--env" ]; then env=true; shift; fi
line="${1:?usage: node-line.sh [--env] <major line, e.g. 24>}"
case "$line" in (*[!0-9]*|'') echo "node-line.sh: a major line is a number (24, 22), not '$line'" >&2; exit 2;; esac
case "$(uname -m)" in (x86_64) arch=x64;; (aarch64|arm64) arch=arm64;; (*) echo "node-line.sh: no npm Node.js package for $(uname -m)" >&2; exit 2;; esac
os="$(uname -s | tr '[:upper:]' '[:lower:]')"
if [ "$(id -u)" = "0" ]; then default_home=/opt/qkms/node; else default_home="${HOME:?}/.cache/qkms/node"; fi
home="${QKMS_NODE_HOME:-$default_home}"
dir="$home/$line"
if ! "$dir/bin/node" -e "process.exit(process.versions.node.split('.')[0] === '$line' ? 0 : 1)" 2>/dev/null; then
  echo "qkms: installing Node.js $line from the npm registry (node-$os-$arch@$line) into $dir" >&2
  stage="$(mktemp -d "${TMPDIR:-/tmp}/qkms-node-$line.XXXXXX")"
  trap 'rm -rf "$stage"' EXIT
  # Its own prefix, so the project's package.json and lock file are not touched.
  npm install --prefix "$stage" --no-save --no-audit --no-fund --loglevel=error "node-$os-$arch@$line" >&2
  mkdir -p "$home"
  rm -rf "$dir"
  mv "$stage/node_modules/node-$os-$arch" "$dir"
  "$dir/bin/node" -e 'process.exit(0)' || { echo "node-line.sh: the installed node does not run" >&2; exit 3; }
fi
if $env; then
  printf 'export PATH=%q:"$PATH" npm_config_nodedir=%q\n' "$dir/bin" "$dir"
else
  echo "$dir"
fi
