#!/usr/bin/env bash
# Reference labels on the realistic trajectories (BKS glasses, Vashishta cristobalite;
# ../README.md), for the committee-uncertainty work: same method as run.sh (README.md:
# Method), a separate label file, trajectories/labels/sio2_md.extxyz. Every line
# resumes where it stopped:
#     nohup bash trajectories/labels/run_md.sh > trajectories/labels/run_md.log 2>&1 &
# Round 0 labels sites in the labeller's fixed random order (seed 0): an unbiased share
# that also gives the held-out test frames. Later rounds (below) add the sites where the
# committee of the current model disagrees most.
set -euo pipefail
cd "$(dirname "$0")/../.."
L="${DYNNMR:-.venv/bin/dynnmr} label --threads ${THREADS:-1}"
OUT=trajectories/labels/sio2_md.extxyz
D=trajectories/densities
# round 0, EFG: the density series (648 atoms, frames 0, 2, 4 of 5)
for rho in 2.0 2.2 2.4 2.6; do
  $L $D/glass_${rho}gcc.extxyz.gz -o $OUT --frames 0:5:2 --max-sites 4 --properties efg
done
# round 0, shielding on two of those sites per frame
for rho in 2.0 2.2 2.4 2.6; do
  $L $D/glass_${rho}gcc.extxyz.gz -o $OUT --frames 0:5:2 --max-sites 2
done
# round 0, EFG: cristobalite at 300 and 900 K, the cooling ramp, the 3,000-atom glass
$L trajectories/cristobalite_300K.extxyz.gz -o $OUT --frames 0:2000:1000 --max-sites 4 --properties efg
$L trajectories/cristobalite_900K.extxyz.gz -o $OUT --frames 0:2000:1000 --max-sites 4 --properties efg
$L trajectories/cristobalite_ramp.extxyz.gz -o $OUT --frames 0:537:134 --max-sites 4 --properties efg
$L trajectories/amorphous_sio2.extxyz.gz -o $OUT --frames 0:20:10 --max-sites 6 --properties efg
# round 0, shielding on two sites of each of those frames
$L trajectories/cristobalite_300K.extxyz.gz -o $OUT --frames 0:2000:1000 --max-sites 2
$L trajectories/cristobalite_900K.extxyz.gz -o $OUT --frames 0:2000:1000 --max-sites 2
$L trajectories/cristobalite_ramp.extxyz.gz -o $OUT --frames 0:537:134 --max-sites 2
$L trajectories/amorphous_sio2.extxyz.gz -o $OUT --frames 0:20:10 --max-sites 2
