#!/usr/bin/env bash
# The device check of issue 16: one script for a session that is lent one CUDA GPU (H100/H200).
#
#   GPU_CHECK_OUT=$OUT/gpu_check bash bench/gpu_check.sh     # on the device (carry .whl, see below)
#   bash bench/gpu_check.sh --rehearse                      # the same steps on the CPU, tiny shapes
#
# Steps, each under its own timeout and all under one overall budget (GPU_CHECK_BUDGET_S, 570 s: give
# the device run timeout_s=600), each writing JSON/text to $GPU_CHECK_OUT (default bench/results/gpu_check;
# a rehearsal's default is $TMPDIR/gpu_check_rehearse):
#   1. pytest -m gpu    the GPU-marked tests (the test files that carry the marker)
#   2. train_step       ms/step at the official shape, eager vs Triton cross-entropy (bench/train_step.py)
#   3. sandbox_train    the seed program through sandbox.run (local backend, GPU lease), FUSED_CE on,
#                       then off if the budget allows: artifact bytes, post-roundtrip BPB, kernel active
#                       (bench/sandbox_train.py; each run compiles, exports and evaluates: minutes)
# then summary.json / summary.txt with the device (nvidia-smi's name, torch, triton, compressors): eight
# files in all (NAME.log and NAME.json per step, steps.jsonl), what a device run brings back from $OUT.
# A failed step does not stop the later ones; the exit status is non-zero if any failed.
#
# Without CUDA it exits 3 within seconds, printing one line, unless --rehearse (or GPU_CHECK_REHEARSE=1).
#
# The device image has torch, triton, sentencepiece and pytest but not pydantic, brotli or zstandard.
# Download their wheels here once (.whl/ is git-ignored) and name .whl in the device run's carry:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 \
#     typing-extensions==4.16.0 brotli==1.2.1 zstandard==0.25.0
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
REHEARSE=${GPU_CHECK_REHEARSE:-0}
for arg in "$@"; do
  case $arg in
    --rehearse) REHEARSE=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown argument $arg (use --rehearse or --help)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}

# ---- 0. fail fast: no CUDA, no check (one line, before anything is written)
if [[ $REHEARSE != 1 ]]; then
  why=$("$PY" -c 'import torch; print("" if torch.cuda.is_available() else f"torch {torch.__version__} sees no CUDA device")' 2>&1 | tail -n 1) || true
  if [[ -n $why ]]; then
    echo "gpu_check: CUDA is absent ($why); nothing was run: use a GPU machine, or --rehearse for a CPU dry run" >&2
    exit 3
  fi
fi

if [[ $REHEARSE == 1 ]]; then  # a rehearsal's numbers are plumbing, not results: outside the tree
  OUT_DIR=${GPU_CHECK_OUT:-${TMPDIR:-/tmp}/gpu_check_rehearse}
else
  OUT_DIR=${GPU_CHECK_OUT:-$ROOT/bench/results/gpu_check}
fi
mkdir -p "$OUT_DIR"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
BUDGET_S=${GPU_CHECK_BUDGET_S:-570}
START_S=$SECONDS
STATUS_FILE="$OUT_DIR/steps.jsonl"
: >"$STATUS_FILE"

# Wheels carried to the device go into the interpreter's own site-packages, so that the programs the
# sandbox starts (with a clean environment) import them too. Never on a rehearsal: they are for 3.12.
if [[ $REHEARSE != 1 ]] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade .whl/*.whl \
    || echo "gpu_check: installing .whl/*.whl failed; the steps may miss pydantic/brotli/zstandard" >&2
fi
if ! "$PY" -c 'import pydantic, sentencepiece, pytest' 2>/dev/null; then
  echo "gpu_check: pydantic, sentencepiece and pytest are needed (carry .whl, see the header of $0)" >&2
  exit 4
fi

# step NAME TIMEOUT_S COMMAND...: runs it under min(TIMEOUT_S, budget left), its output in NAME.log
step() {
  local name=$1 limit=$2 left rc t0
  shift 2
  left=$((BUDGET_S - (SECONDS - START_S)))
  ((limit > left)) && limit=$left
  t0=$SECONDS
  if ((limit < 10)); then
    rc=124
    echo "skipped: the overall budget GPU_CHECK_BUDGET_S=$BUDGET_S is spent" >"$OUT_DIR/$name.log"
  else
    echo "== $name (timeout ${limit}s): $*"
    set +e
    timeout --kill-after=15 "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
    rc=$?
    set -e
  fi
  printf '{"step": "%s", "rc": %d, "seconds": %d, "timeout_s": %d}\n' \
    "$name" "$rc" $((SECONDS - t0)) "$limit" >>"$STATUS_FILE"
  echo "   rc $rc in $((SECONDS - t0))s; last lines of $name.log:"
  tail -n 4 "$OUT_DIR/$name.log" | sed 's/^/   | /'
}

"$PY" bench/gpu_check_report.py device

mapfile -t GPU_TESTS < <(grep -rlE --include='test_*.py' 'pytest\.mark\.gpu' tests | sort)
step pytest_gpu "${GPU_CHECK_PYTEST_S:-150}" \
  "$PY" -m pytest -m gpu -q -p no:cacheprovider "${GPU_TESTS[@]}"

if [[ $REHEARSE == 1 ]]; then
  step train_step 240 "$PY" bench/train_step.py --tiny --steps 5 --out "$OUT_DIR/train_step.json"
  SANDBOX=(--tiny --steps 5)
else
  step train_step "${GPU_CHECK_TRAIN_STEP_S:-210}" \
    "$PY" bench/train_step.py --steps 40 --out "$OUT_DIR/train_step.json"
  SANDBOX=(--steps 60)
fi
left=$((BUDGET_S - (SECONDS - START_S)))
step sandbox_train "$left" "$PY" bench/sandbox_train.py "${SANDBOX[@]}" --budget-seconds $((left - 20)) \
  --out "$OUT_DIR/sandbox_train.json"

"$PY" bench/gpu_check_report.py summary --out "$OUT_DIR" --rehearse "$REHEARSE"
