#!/usr/bin/env bash
# Installs what building and testing Corral needs on a Debian 12 machine (run as root, or with
# sudo): libclang for RocksDB's bindings, etcd for the store benchmark, DNS clients, and a static
# busybox for the workload image. protoc is vendored by the build. Idempotent.
set -euo pipefail
need=(libclang-dev protobuf-compiler etcd-server etcd-client dnsutils knot-dnsutils dnsperf busybox-static)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# etcd's package starts a system service on 2379/2380; the benchmark runs its own members.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi
