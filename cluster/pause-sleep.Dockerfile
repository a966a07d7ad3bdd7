# The infra (pause) container when no static tini is at hand: busybox sleep as PID 1. It ignores
# SIGTERM (PID 1 has no default handlers), so a stop takes the engine's kill timeout.
FROM scratch
COPY . /
ENTRYPOINT ["/bin/sleep", "infinity"]
