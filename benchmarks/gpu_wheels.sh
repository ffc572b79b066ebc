#!/usr/bin/env bash
# Fetch, here, the wheels the device machine lacks (it has torch, e3nn, numba, scipy,
# xarray, pyyaml; Python 3.12, CUDA 13; nothing can be fetched there), for
# benchmarks/gpu_check.sh. One device call carries at most 64 MiB with the repository:
#   .whl/            dynnmr's other needs (12 MB)
#   .cue/cue.tar.xz  cuequivariance, its CUDA 13 kernels and torch layer, unpacked from
#                    their wheels and packed with xz (74 MB of wheels become 29 MB)
# so one call carries both: run.carry = [".whl", ".cue"], command `bash benchmarks/gpu_check.sh`.
# The repository travels too and is about 70 MB, mostly trajectories and labels the GPU
# checks do not read; keep the largest out of the call (untracked and ignored, they stay here):
#   big="trajectories/cristobalite_300K.extxyz.gz trajectories/cristobalite_900K.extxyz.gz
#        trajectories/labels/sio2_md.extxyz trajectories/labels/sio2_clusters.extxyz
#        trajectories/labels/teacher_sio2-x2.extxyz"
#   git rm -q --cached $big && printf '/%s\n' $big >> .git/info/exclude
#   ... the device call ...
#   git reset -q -- $big, and delete those lines from .git/info/exclude
# (.git/info/exclude also needs /.whl/ and /.cue/, so that they travel only when carried).
set -euo pipefail
cd "$(dirname "$0")/.."
get() {  # folder, then NAME==VERSION ...
  local dir=$1; shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dir" "$@"
}
get .whl vesin vesin-torch array-api-compat ase zarr==3.1.6 numcodecs==0.16.6 donfig google-crc32c platformdirs dask distributed tornado zict tblib partd locket
tmp=$(mktemp -d)
get "$tmp/whl" cuequivariance==0.13.0 cuequivariance-torch==0.13.0 cuequivariance-ops-cu13==0.13.0 \
  cuequivariance-ops-torch-cu13==0.13.0
for w in "$tmp"/whl/*.whl; do python3 -m zipfile -e "$w" "$tmp/site"; done
mkdir -p .cue && tar -cJf .cue/cue.tar.xz -C "$tmp" site && rm -rf "$tmp"
du -sh .whl .cue
