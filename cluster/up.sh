#!/usr/bin/env bash
# Builds the images (cluster/build.sh) and starts the cluster with docker-compose: 3 servers and
# 3 agents (docker runtime) on one compose network; then prints where each server's client
# (gRPC), HTTP and DNS ports are published on this host, and waits until the three nodes are
# registered.
#
# Environment:
#   COMPOSE_PROJECT_NAME                     the compose project (default corral)
#   CORRAL_NET                               first two octets of the compose network (default 172.30)
#   CORRAL_AGENT_DATA                        host directory of the agents' data (default
#                                            /tmp/corral-compose-<project>); bind-mounted at the same path
#   CORRAL_POD_EVICTION_SECONDS              how long pods stay on a lost node (default 10)
#   CORRAL_SERVER{1,2,3}_{API,HTTP,DNS}_PORT  host ports (defaults 17070/17072/17053, 17080/17082/17063,
#                                            17090/17092/17073)
#   and those cluster/build.sh reads (CARGO_TARGET_DIR, CORRAL_BIN, ...)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-corral}"
project="$COMPOSE_PROJECT_NAME"
export CORRAL_AGENT_DATA="${CORRAL_AGENT_DATA:-/tmp/corral-compose-$project}"
mkdir -p "$CORRAL_AGENT_DATA"/agent{1,2,3}
# The engine resolves bind mounts on the host: the directory must be an absolute, real path.
CORRAL_AGENT_DATA="$(cd "$CORRAL_AGENT_DATA" && pwd -P)"

"$here/build.sh"
compose=(docker-compose -p "$project" -f "$root/docker-compose.yml")
"${compose[@]}" up -d --no-build

# The agents register their Nodes once the servers have elected a leader.
for a in agent1 agent2 agent3; do
  for _ in $(seq 120); do
    "${compose[@]}" logs --no-color "$a" 2>/dev/null | grep -q "node registered" && break
    sleep 0.5
  done
  "${compose[@]}" logs --no-color "$a" 2>/dev/null | grep -q "node registered" ||
    echo "warning: $a has not registered its node within 60 s (docker-compose logs $a)" >&2
done

echo "cluster $project is up (agents' data in $CORRAL_AGENT_DATA):"
api=()
for s in server1 server2 server3; do
  a="$("${compose[@]}" port "$s" 7070)"
  h="$("${compose[@]}" port "$s" 7072)"
  d="$("${compose[@]}" port --protocol udp "$s" 53)"
  api+=("$a")
  printf '  %s  api %-16s http http://%s/readyz  dns %s\n' "$s" "$a" "$h" "$d"
done
servers="$(IFS=,; echo "${api[*]}")"
echo "clients: corralctl --server $servers ..."
echo "stop:    COMPOSE_PROJECT_NAME=$project CORRAL_AGENT_DATA=$CORRAL_AGENT_DATA $here/down.sh"
