#!/usr/bin/env bash
# Fetch, here, the wheels the device machine lacks (it has torch, e3nn, numba, scipy,
# xarray, pyyaml; Python 3.12, CUDA 13; nothing can be fetched there), for
# benchmarks/gpu_check.sh. Three folders, because one device call carries at most 64 MiB
# with the repository:
#   .whl/        dynnmr's other needs (12 MB)
#   .whl-cue-a/  cuequivariance's CUDA 13 kernels (43 MB)
#   .whl-cue-b/  cuequivariance, its torch layer and their torch kernels (28 MB)
# On the device, a first call carrying .whl-cue-a, then a second carrying .whl-cue-b and .whl:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl-cue-a/*.whl
#   cp -r .whl-cue-b/* .whl/ && bash benchmarks/gpu_check.sh
# (the machine stays warm between calls made within its idle time, and /tmp with it).
# The repository travels too and is about 59 MB, mostly trajectories the GPU checks do not
# read; keep the four largest out of the calls (untracked and ignored, they stay here):
#   big="trajectories/cristobalite_300K.extxyz.gz trajectories/cristobalite_900K.extxyz.gz
#        trajectories/labels/sio2_md.extxyz trajectories/labels/sio2_clusters.extxyz"
#   git rm -q --cached $big && printf '/%s\n' $big >> .git/info/exclude
#   ... the two device calls ...
#   git reset -q -- $big, and delete those lines from .git/info/exclude
set -euo pipefail
cd "$(dirname "$0")/.."
get() {  # folder, then NAME==VERSION ...
  local dir=$1; shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dir" "$@"
}
get .whl vesin vesin-torch ase zarr numcodecs donfig crc32c dask distributed tornado zict tblib partd locket
get .whl-cue-a cuequivariance-ops-cu13==0.13.0
get .whl-cue-b cuequivariance==0.13.0 cuequivariance-torch==0.13.0 cuequivariance-ops-torch-cu13==0.13.0
du -sh .whl .whl-cue-a .whl-cue-b
