#!/usr/bin/env bash
# Install everything the tests need and run them. README's test command and .ci/run both call this.
# As root on Debian it also installs the Docker engine, PostgreSQL and bubblewrap so the `docker`,
# multi-worker and confined-local tests run for real; elsewhere those tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v bwrap >/dev/null || need+=(bubblewrap)  # confines the local sandbox backend (sandbox/backends/confinement.py)
  [ -x /usr/lib/postgresql/15/bin/postgres ] || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
  command -v chromium >/dev/null || need+=(chromium)  # renders the HTML report in tests/controller/test_report.py
  if [ ${#need[@]} -gt 0 ]; then
    echo "[test.sh] installing ${need[*]} (Debian packages)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; } ||
      echo "[test.sh] could not install ${need[*]}; the tests that need them will skip with a reason"
  fi
fi
# torch==2.13.0 first: an unpinned torch would pull the multi-GB CUDA build on a CPU machine.
python3 -m pip install -q torch==2.13.0 -e ".[train,dev]"
# The slowest tests are listed at the end, so a slow new one shows (the fast set is `-m "not slow"`).
exec python3 -m pytest --durations=15 "$@"
