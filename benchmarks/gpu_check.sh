#!/usr/bin/env bash
# GPU check, one script for one GPU in at most ~5 minutes:
#   1. the tests that need CUDA (pytest -m gpu; FSPNET_REQUIRE_CUDA=1 makes a missing GPU fail them);
#   2. the figures (benchmarks/gpu_check.py): decoder training spectra/s at batch 60, 1024 and 4096
#      with data resident on the device, host<->device copies per epoch and peak GPU memory;
#      synthesis (forward model + folding) spectra/s; encoder prediction spectra/s; a 4-trial study
#      run by 4 local workers sharing the one GPU.
# Results: <out>/gpu_check.json, <out>/gpu_tests.txt, <out>/nvidia-smi.txt and a printed table.
#
#   bash benchmarks/gpu_check.sh                              # on the GPU machine (CUDA device 0)
#   bash benchmarks/gpu_check.sh --device cpu --out /tmp/gc   # dry run on a CPU: tiny sizes, tests skip
#
# Exit status: 0 when every test passed and every part ran, 1 otherwise (see the table).
set -uo pipefail
cd "$(dirname "$0")/.."

device=cuda
out=outputs/gpu_check
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (use --device DEV, --out DIR)" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
export OMP_WAIT_POLICY=PASSIVE PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

start=$(date +%s)
{ date -u; python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
  command -v nvidia-smi >/dev/null && nvidia-smi; } > "$out/nvidia-smi.txt" 2>&1
head -3 "$out/nvidia-smi.txt"

echo "== 1. tests that need CUDA (pytest -m gpu) =="
require=1
[ "$device" = cpu ] && require=0
FSPNET_REQUIRE_CUDA=$require timeout 150 python -m pytest -q -m gpu -p no:cacheprovider tests/ 2>&1 | tee "$out/gpu_tests.txt" | tail -15
tests_rc=${PIPESTATUS[0]}
[ "$tests_rc" = 5 ] && tests_rc=0  # 5: nothing collected/selected is not a failure of the code

echo "== 2. figures (benchmarks/gpu_check.py --device $device) =="
timeout 240 python benchmarks/gpu_check.py --device "$device" --out "$out" --tests-rc "$tests_rc"
rc=$?
echo "gpu_check: $(( $(date +%s) - start )) s in all; results in $out/gpu_check.json"
exit $(( rc != 0 || tests_rc != 0 ))
