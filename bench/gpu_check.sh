#!/bin/bash
# The GPU path checked and timed in one go, on a CUDA machine with PyTorch (its python3),
# from the repository root, with what `make gpu-prepare` made beside it (.whl/ and
# bench/.cache/demo_gpu). Results go to $OUT (else bench/results/): gpu_check.json
# (bench/gpu_check.py: the GPU against the CPU on the same weights), generation_gpu.json
# (bench/bench_generation.py --gpu), training_gpu.json (bench/bench_training.py), the
# machine's description (with any requirement of the check still unmet there) and each
# step's log. Every step has its own time limit, so a slow one leaves the others their turn,
# and writes its results as it goes; the exit status is the first failure's.
#
#   bash bench/gpu_check.sh                     # everything (its limits sum to 7.5 minutes)
#   GPU_CHECK_QUICK=1 bash bench/gpu_check.sh   # gpu_check.py alone, small preset
set -u
out=${OUT:-bench/results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 KEDRO_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 MPLBACKEND=Agg
py=${PYTHON:-python3}
site=${GPU_CHECK_SITE:-/tmp/cxr_gpu_site}
if ls .whl/*.whl >/dev/null 2>&1; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .whl/*.whl || { echo "gpu_check: the wheels in .whl did not install"; exit 2; }
    export PYTHONPATH="$PWD/src:$site"
else
    export PYTHONPATH="$PWD/src"
fi
{
    date -u +%FT%TZ
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
    "$py" -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.is_available())'
    nproc
    "$py" bench/gpu_prepare.py --unmet 2>&1
} | tee "$out/machine.txt"

status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $out/NAME.log
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "$name: rc $rc, $((SECONDS - t0)) s$([ $rc -eq 124 ] && echo ", stopped at its limit of $limit s")"
    tail -n 25 "$out/$name.log"
    [ $rc -ne 0 ] && [ $status -eq 0 ] && status=$rc
    return 0
}

if [ -n "${GPU_CHECK_QUICK:-}" ]; then
    step gpu_check 240 "$py" bench/gpu_check.py --quick --out "$out/gpu_check.json"
    exit $status
fi
# 2,100 images a folder: pytorch-fid's Frechet distance wants more than the 2,048 features
step gpu_check 120 "$py" bench/gpu_check.py --out "$out/gpu_check.json"
step generation 240 "$py" bench/bench_generation.py --gpu --fid-images 2100 --out "$out/generation_gpu.json"
step training 90 "$py" bench/bench_training.py --out "$out/training_gpu.json"
exit $status
