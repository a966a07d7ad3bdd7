# The infra (pause) container that holds a pod's network namespace: tini as PID 1 reaps zombies
# and passes SIGTERM on to a busybox sleep that never ends, so the container stops at once.
FROM scratch
COPY . /
ENTRYPOINT ["/bin/tini", "-s", "--", "/bin/sleep", "infinity"]
