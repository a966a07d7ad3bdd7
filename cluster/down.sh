#!/usr/bin/env bash
# Stops the docker-compose cluster and removes everything it made: the pods' containers (found by
# the labels Corral's docker runtime puts on them: the infra containers on the project's network,
# then every container of those pods), the servers and agents, the network, the volumes (the
# servers' data) and the agents' data directory.
#
# Environment:
#   COMPOSE_PROJECT_NAME  the compose project (default corral)
#   CORRAL_AGENT_DATA     the agents' data directory on the host (default /tmp/corral-compose-<project>)
# With --all-pods, every container any Corral agent made on this engine is removed too
# (label io.corral.managed=true), whichever cluster it belonged to.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-corral}"
project="$COMPOSE_PROJECT_NAME"
export CORRAL_AGENT_DATA="${CORRAL_AGENT_DATA:-/tmp/corral-compose-$project}"
network="${project}_corral"
compose=(docker-compose -p "$project" -f "$root/docker-compose.yml")

# The agents first, so none starts a pod while the pods go.
"${compose[@]}" stop -t 2 agent1 agent2 agent3 >/dev/null 2>&1 || true

# Pods: every container of a pod whose infra container is on this project's network.
uids="$(docker ps -aq --filter label=io.corral.type=sandbox --filter "network=$network" |
  xargs -r docker inspect -f '{{index .Config.Labels "io.corral.pod-uid"}}' | sort -u)"
ids=""
for uid in $uids; do
  ids="$ids $(docker ps -aq --filter "label=io.corral.pod-uid=$uid")"
done
if [ "${1:-}" = "--all-pods" ]; then
  ids="$ids $(docker ps -aq --filter label=io.corral.managed=true)"
fi
ids="$(tr ' ' '\n' <<<"$ids" | sed '/^$/d' | sort -u)"
if [ -n "$ids" ]; then
  echo "removing $(wc -l <<<"$ids") pod container(s)"
  # shellcheck disable=SC2086
  docker rm -f -v $ids >/dev/null
fi
"${compose[@]}" down -v --remove-orphans -t 2

# The agents' data (written by root inside the containers: removed from a container, so this
# works without root on the host too).
if [ -d "$CORRAL_AGENT_DATA" ]; then
  docker run --rm -v "$CORRAL_AGENT_DATA:/data" --entrypoint /bin/sh corral-busybox:local \
    -c 'rm -rf /data/agent1 /data/agent2 /data/agent3' >/dev/null 2>&1 || true
  rmdir "$CORRAL_AGENT_DATA" 2>/dev/null || rm -rf "$CORRAL_AGENT_DATA" 2>/dev/null || true
fi
