#!/usr/bin/env bash
# Make sure a Docker engine answers; start one if we can. Used by the docker test fixtures
# (tests/sandbox/docker_env.py), which is how .ci/run -> scripts/test.sh gets an engine for CI.
#
# Exit 0 when `docker info` works (already running or started here; then the daemon's pid is in
# $AUTOGOLF_DOCKERD_PIDFILE). Otherwise exit non-zero with a line on stderr that says why (not root,
# no dockerd, the daemon failed to come up: see its log).
# The vfs storage driver is chosen because it works inside containers and VMs without overlayfs
# support; it is slower to create layers, which the tests avoid by importing one flat rootfs.
set -u
wait_seconds="${AUTOGOLF_DOCKERD_WAIT:-30}"
log="${AUTOGOLF_DOCKERD_LOG:-/tmp/autogolf-dockerd.log}"
# The pid of a daemon this script started, so that whoever started it (the test fixtures) can stop
# exactly that process later and leave an engine started any other way alone.
pidfile="${AUTOGOLF_DOCKERD_PIDFILE:-/tmp/autogolf-dockerd.pid}"

engine_answers() { docker info >/dev/null 2>&1; }

if ! command -v docker >/dev/null 2>&1; then
  echo "docker_engine.sh: no docker CLI on PATH (install docker.io)" >&2
  exit 2
fi
if engine_answers; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "docker_engine.sh: the Docker engine is not running and only root can start it here" >&2
  exit 3
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker_engine.sh: the Docker engine is not running and dockerd is not installed (apt-get install docker.io)" >&2
  exit 4
fi
# A daemon that died uncleanly leaves its pid file behind and refuses to start again.
if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  rm -f /var/run/docker.pid
fi
if [ ! -f /var/run/docker.pid ]; then
  # setsid + nohup: the daemon must outlive the shell (and pytest) that started it.
  setsid nohup dockerd --storage-driver=vfs >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
fi
for _ in $(seq 1 $((wait_seconds * 5))); do
  if engine_answers; then
    exit 0
  fi
  sleep 0.2
done
echo "docker_engine.sh: dockerd did not answer within ${wait_seconds}s; see $log:" >&2
tail -n 5 "$log" >&2 2>/dev/null
exit 5
