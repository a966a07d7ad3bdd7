#!/usr/bin/env bash
# Builds the images (cluster/build.sh) and starts the 3-server cluster with docker-compose, then
# prints where each server's client (gRPC) and HTTP ports are published on this host.
#
# Environment:
#   COMPOSE_PROJECT_NAME                 the compose project (default corral)
#   CORRAL_SERVER{1,2,3}_{API,HTTP}_PORT  host ports (defaults 17070/17072, 17080/17082, 17090/17092)
#   and those cluster/build.sh reads (CARGO_TARGET_DIR, CORRAL_BIN, ...)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
project="${COMPOSE_PROJECT_NAME:-corral}"

"$here/build.sh"
compose=(docker-compose -p "$project" -f "$root/docker-compose.yml")
"${compose[@]}" up -d --no-build

echo "cluster $project is up:"
api=()
for s in server1 server2 server3; do
  a="$("${compose[@]}" port "$s" 7070)"
  h="$("${compose[@]}" port "$s" 7072)"
  api+=("$a")
  printf '  %s  api %-16s http http://%s/readyz\n' "$s" "$a" "$h"
done
servers="$(IFS=,; echo "${api[*]}")"
echo "clients: corralctl --server $servers ..."
echo "stop:    COMPOSE_PROJECT_NAME=$project $here/down.sh"
