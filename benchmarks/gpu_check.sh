#!/usr/bin/env bash
# The GPU checks, as one script for the device machine (torch and e3nn there; the other
# packages carried as .whl/ and .cue/cue.tar.xz, made by benchmarks/gpu_wheels.sh):
# the CUDA tests of the fused kernel and of the spread, the spread's cost
# (benchmarks/gpu_spread.py), the default model's speed on the fused kernel and on e3nn
# (the issue's target; with the spread's eigenvalues from cuSOLVER and in closed form,
# tensors.TORCH_EIGEN), a profile of `analyze` (benchmarks/profile_gpu.py), the fused
# kernel with padded edges (tensorproduct.PAD_EDGES), the other CUDA tests, then the
# small silicate-29si model.
# The most wanted numbers come first, so a run stopped at its limit still returns them.
# Results land in $OUT (pytest.log, gpu.log, gpu-spread.json, gpu-sio2-*.json for four
# variants, profile-gpu.log: 8 files, the most that come back).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
if [ -f .cue/cue.tar.xz ]; then tar -xJf .cue/cue.tar.xz -C /tmp || exit 1; fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.log"
python3 -c "import torch, e3nn, numba, vesin_torch; print('torch', torch.__version__, 'e3nn', e3nn.__version__, 'numba', numba.__version__)" | tee -a "$OUT/gpu.log"
python3 -c "import cuequivariance_ops_torch, cuequivariance_torch" 2>&1 | tail -3 | tee -a "$OUT/gpu.log"
python3 -c "from dynnmr import tensorproduct; print('cuequivariance kernels:', tensorproduct.cuda_kernels())" | tee -a "$OUT/gpu.log"
pytest() { python3 -m pytest -q -p no:cacheprovider -ra "$@" 2>&1 | tee -a "$OUT/pytest.log"; }
pytest tests/test_tensorproduct.py tests/test_uncertainty.py -k "cuda or torch"
# the committee spread's cost on the GPU (the package path against torch's solver alone, a
# closed-form alternative and NumPy on the host), before the end-to-end runs that include it
python3 benchmarks/gpu_spread.py --json "$OUT/gpu-spread.json" 2>&1 | tee -a "$OUT/gpu.log"
# the issue's GPU target: the default model (a committee) with the uncertainty stored,
# on the fused kernel (cuequivariance, when it came along) and on e3nn
bench() { python3 benchmarks/gpu.py --model "$1" --kernel "$2" --sizes 7,14 --big-frames 150 "${@:3}" --json "$OUT/gpu-$1-$2.json" 2>&1 | tee -a "$OUT/gpu.log"; }
bench sio2 fused
# the same with the spread's eigenvalues in closed form instead of cuSOLVER's batched solver
python3 benchmarks/gpu.py --model sio2 --kernel fused --eigen closed --sizes 7,14 --big-frames 150 --device-graphs-only \
  --json "$OUT/gpu-sio2-fused-closed.json" 2>&1 | tee -a "$OUT/gpu.log"
bench sio2 e3nn
# where the time of `analyze` goes on the GPU, per message path (#27's profile; the fused
# kernel was slower than e3nn inside `analyze` for silicate-29si though faster alone)
for m in silicate-29si sio2; do python3 benchmarks/profile_gpu.py --model $m 2>&1 | grep -v USDT | tee -a "$OUT/profile-gpu.log"; done
# the fused kernel with its edges padded to a few lengths, in case run-time compiles keyed
# on the edge count are what the profile shows (then tensorproduct.PAD_EDGES goes on)
bench sio2 fused-padded --device-graphs-only
pytest tests/test_model.py tests/test_engine.py tests/test_distributed.py -k "cuda or device_graphs or equivariance or gpu_worker"
# (their numbers in gpu.log only: at most 8 files come back)
for k in fused e3nn; do python3 benchmarks/gpu.py --model silicate-29si --kernel $k --sizes 7,14 --big-frames 150 2>&1 | tee -a "$OUT/gpu.log"; done
