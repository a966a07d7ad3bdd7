#!/usr/bin/env bash
# Stops the docker-compose cluster and removes its containers, network and volumes (the servers'
# data), and every pod container a Corral agent made (label corral.io/managed=true).
#
# Environment: COMPOSE_PROJECT_NAME, the compose project (default corral).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
project="${COMPOSE_PROJECT_NAME:-corral}"

# Pods first: they may hold the compose network.
pods="$(docker ps -aq --filter label=corral.io/managed=true)"
if [ -n "$pods" ]; then
  echo "removing $(wc -w <<<"$pods") pod container(s) labelled corral.io/managed=true"
  # shellcheck disable=SC2086
  docker rm -f -v $pods >/dev/null
fi
docker-compose -p "$project" -f "$root/docker-compose.yml" down -v --remove-orphans
