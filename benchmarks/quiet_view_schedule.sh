#!/usr/bin/env bash
# The view-sequential step's time table (benchmarks/README.md), for a quiet machine: ViT-S/16, 224 px,
# batch 8, one thread, 12 interleaved rounds (+1 warm-up), process CPU time, at normal priority.
# Cases: the two transformers peers (hf_cls, hf_mim), the A/A controls (hf_cls_twin, stl_twin), STL,
# the joint and the view-sequential MTL step, and the MAE option under both schedules.
#
# Usage, from the repository root:  bash benchmarks/quiet_view_schedule.sh [OUT.json]
# (default OUT: benchmarks/results/vits16-cpu-view-schedule-quiet.json). About 10 minutes of one core
# on a quiet machine. The load average at the start and end is printed and kept in the JSON
# (machine.loadavg_start / loadavg_end): a run that started above MAX_LOAD (default 1.5) says so.
set -euo pipefail

out="${1:-benchmarks/results/vits16-cpu-view-schedule-quiet.json}"
python="${PYTHON:-python}"
max_load="${MAX_LOAD:-1.5}"

load_now() { cut -d' ' -f1 /proc/loadavg; }
start_load="$(load_now)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
if awk -v l="$start_load" -v m="$max_load" 'BEGIN { exit !(l > m) }'; then
    echo "note: the 1-minute load average ($start_load) is above $max_load; this is not a quiet run" >&2
fi

start="$(date +%s)"
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$python" -m benchmarks.harness --size vits16 --threads 1 --batch-size 8 \
    --rounds 12 --warmup 1 --suites speed \
    --cases hf_cls,hf_cls_twin,stl,stl_twin,hf_mim,mtl,mtl_views,mtl_mae,mtl_mae_views \
    --no-flops --json "$out"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); wall time $(($(date +%s) - start)) s; JSON: $out"
