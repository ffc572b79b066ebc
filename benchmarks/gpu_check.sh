#!/usr/bin/env bash
# The GPU checks, as one script for the device machine (torch and e3nn there; the other
# wheels carried in .whl/, see benchmarks/README.md): CUDA tests, then benchmarks/gpu.py.
# cuequivariance's CUDA wheels for torch's CUDA 13 (cuequivariance-ops-cu13, 45 MB, and
# cuequivariance-ops-torch-cu13, 29 MB) exceed one call's 64 MiB with the others: carry the
# first in one call and install it into /tmp/site (the machine stays warm between calls),
# then run this script with the rest; without them the fused rows run e3nn.
# Results land in $OUT (pytest.log, gpu.log, gpu.json).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.log"
python3 -c "import torch, e3nn, numba, vesin_torch; print('torch', torch.__version__, 'e3nn', e3nn.__version__, 'numba', numba.__version__)" | tee -a "$OUT/gpu.log"
python3 -c "from dynnmr import tensorproduct; print('cuequivariance kernels:', tensorproduct.cuda_kernels())" | tee -a "$OUT/gpu.log"
python3 -m pytest -q -p no:cacheprovider -ra tests/test_model.py tests/test_engine.py tests/test_distributed.py tests/test_tensorproduct.py -k "cuda or device_graphs or equivariance or gpu_worker" 2>&1 | tee "$OUT/pytest.log"
# the GPU target: the default model (a committee) with the uncertainty stored, and
# the single-head silicate-29si, on the fused kernel (cuequivariance, when its wheels came
# along) and on e3nn
for m in sio2 silicate-29si; do
  for k in fused e3nn; do
    python3 benchmarks/gpu.py --model $m --kernel $k --sizes 7,14 --big-frames 150 --json "$OUT/gpu-$m-$k.json" 2>&1 | tee -a "$OUT/gpu.log"
  done
done
