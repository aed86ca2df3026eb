#!/usr/bin/env bash
# Run chapters at `paper` scale on a GPU machine that has JAX but no Jupyter, and pack what the
# results store needs (each chapter's record and traces, and its log) into one file under $OUT.
#
#   EOSLIB_GIT_HASH=<clean commit> bash scripts/gpu-paper-runs.sh CHAPTER[:NAME=VALUE,...] ...
#
# - Run from the repository root of a copy of a CLEAN commit (no .git needed). EOSLIB_GIT_HASH names
#   that commit; the record also carries the digest of the code that actually ran, and
#   `python -m eoslib store` refuses the run unless the two agree (see book/rerun.md).
# - Chapters run one after another (JOBS=1, default) or JOBS at a time on the one GPU, each process
#   then limited to 0.9/JOBS of the GPU's memory (XLA_PYTHON_CLIENT_MEM_FRACTION).
# - Each chapter is stopped after PER_CHAPTER_S seconds (default 540); a stopped or failed chapter
#   is listed as such in summary.txt, never dropped.
# - Data: EOSLIB_DATA (default ./.devdata, the folder carried to the GPU machine).
# - Output: $OUT/paper-runs.tgz (one folder per chapter: CHAPTER.json, CHAPTER-*.npz, run.log) and
#   $OUT/summary.txt; without $OUT, /tmp/paper-out.
set -u
: "${EOSLIB_GIT_HASH:?set EOSLIB_GIT_HASH to the clean commit this tree was copied from}"
export EOSLIB_GIT_HASH
OUT=${OUT:-/tmp/paper-out}
RUNS=${RUNS:-/tmp/paper-runs}
JOBS=${JOBS:-1}
PER_CHAPTER_S=${PER_CHAPTER_S:-540}
PY=${PY:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export EOSLIB_DATA=${EOSLIB_DATA:-$PWD/.devdata}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if [ "$JOBS" -gt 1 ]; then
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  export XLA_PYTHON_CLIENT_MEM_FRACTION=$("$PY" -c "print(round(0.9 / $JOBS, 3))")
fi
mkdir -p "$RUNS" "$OUT"
{
  echo "commit (EOSLIB_GIT_HASH): $EOSLIB_GIT_HASH"
  echo "source digest of this tree: $("$PY" -c 'from eoslib.book.results import source_digest; print(source_digest())')"
  "$PY" -c 'import jax; print("jax", jax.__version__, jax.devices())'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
} > "$OUT/summary.txt" 2>&1

run_one() {  # CHAPTER[:NAME=VALUE,...]
  local spec=$1 chapter=${1%%:*} args=() folder
  if [[ $spec == *:* ]]; then
    IFS=',' read -ra pairs <<< "${spec#*:}"
    for pair in "${pairs[@]}"; do args+=(-p "${pair%%=*}" "${pair#*=}"); done
  fi
  folder="$RUNS/$chapter"
  mkdir -p "$folder"
  local t0=$SECONDS
  timeout "$PER_CHAPTER_S" "$PY" -m eoslib run "$chapter" --scale paper --no-kernel \
    --out "$folder" "${args[@]}" > "$folder/run.log" 2>&1
  local rc=$? status=ok
  [ $rc -eq 124 ] && status="stopped after ${PER_CHAPTER_S} s"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && status="failed (exit $rc): $(grep -m1 '^error' "$folder/run.log")"
  echo "$chapter: $status, $((SECONDS - t0)) s" >> "$OUT/summary.txt"
  grep '^  \[' "$folder/run.log" | sed "s/^/  $chapter /" >> "$OUT/summary.txt"
}

running=0
for spec in "$@"; do
  run_one "$spec" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait
tar -czf "$OUT/paper-runs.tgz" -C "$RUNS" .
cat "$OUT/summary.txt"
