#!/usr/bin/env bash
# The GPU checks, as one script for the device machine (torch and e3nn there; the other
# wheels carried in .whl/, see benchmarks/README.md): CUDA tests, then benchmarks/gpu.py.
# Results land in $OUT (pytest.log, gpu.log, gpu.json).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.log"
python3 -c "import torch, e3nn, numba, vesin_torch; print('torch', torch.__version__, 'e3nn', e3nn.__version__, 'numba', numba.__version__)" | tee -a "$OUT/gpu.log"
python3 -m pytest -q -p no:cacheprovider -ra tests/test_model.py tests/test_engine.py tests/test_distributed.py -k "cuda or device_graphs or equivariance or gpu_worker" 2>&1 | tee "$OUT/pytest.log"
# the GPU target: the default architecture with its committee and the uncertainty stored
for m in sio2-committee sio2; do
  python3 benchmarks/gpu.py --model $m --json "$OUT/gpu-$m.json" 2>&1 | tee -a "$OUT/gpu.log"
done
