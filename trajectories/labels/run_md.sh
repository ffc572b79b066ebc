#!/usr/bin/env bash
# Reference labels on the realistic trajectories (BKS glasses, Vashishta cristobalite;
# ../README.md), for the committee-uncertainty work: same method as run.sh (README.md:
# Method), a separate label file, trajectories/labels/sio2_md.extxyz. Every line
# resumes where it stopped (make labels-md):
#     nohup bash trajectories/labels/run_md.sh > trajectories/labels/run_md.log 2>&1 &
# Round 0 labels sites in the labeller's fixed random order (seed 0) on frames 0, 2, 4 of
# the density series (and a few frames of each other file): an unbiased sample, and the
# frames to test on. Rounds 1 and 2 are active learning on other frames: the bundled
# committee (the default sio2; rounds 1 and the first sites of round 2 were picked by the
# committee bundled before it, in git history as sio2-committee) picks the sites where its
# members disagree most, a quarter still at random (--select-by; the file records
# chosen_by_spread per site). SELECT_BY=MODEL picks by another model file. Frames of one
# run a few ps apart are one network: the rounds before --new-atoms relabelled atoms of the
# round-0 (test) frames in training frames (python studies/md_holdout.py MODEL --unseen
# tests on the others); from round 2's 2.4 g/cm3 frame 3 on, active rounds pass over
# atoms labelled in any frame of the same file.
set -euo pipefail
cd "$(dirname "$0")/../.."
L="${DYNNMR:-.venv/bin/dynnmr} label --threads ${THREADS:-1}"
A="$L --select-by ${SELECT_BY:-sio2} --new-atoms"  # --new-atoms: held-out frames' atoms stay out of training
OUT=${LABELS_OUT:-trajectories/labels/sio2_md.extxyz}  # another path: label a copy while a model trains on this one
D=trajectories/densities
RHO="2.0 2.2 2.4 2.6"
# round 0, EFG: the density series (648 atoms, frames 0, 2, 4 of 5)
for rho in $RHO; do $L $D/glass_${rho}gcc.extxyz.gz -o $OUT --frames 0:5:2 --max-sites 4 --properties efg; done
# round 1, EFG: frames 1 and 3 of the density series, sites chosen by the committee
for rho in $RHO; do $A $D/glass_${rho}gcc.extxyz.gz -o $OUT --frames 1:5:2 --max-sites 6 --properties efg; done
# round 0, shielding on two of the round-0 sites per frame
for rho in $RHO; do $L $D/glass_${rho}gcc.extxyz.gz -o $OUT --frames 0:5:2 --max-sites 2; done
# round 0, EFG: cristobalite at 300 and 900 K, the cooling ramp, the 3,000-atom glass
$L trajectories/cristobalite_300K.extxyz.gz -o $OUT --frames 0:2000:1000 --max-sites 4 --properties efg
$L trajectories/cristobalite_900K.extxyz.gz -o $OUT --frames 0:2000:1000 --max-sites 4 --properties efg
$L trajectories/cristobalite_ramp.extxyz.gz -o $OUT --frames 0:537:134 --max-sites 4 --properties efg
$L trajectories/amorphous_sio2.extxyz.gz -o $OUT --frames 0:20:10 --max-sites 6 --properties efg
# round 1, EFG and shielding: other frames of the same files, chosen by the committee
$A trajectories/cristobalite_900K.extxyz.gz -o $OUT --frames 500:2000:1000 --max-sites 6 --properties efg
$A trajectories/cristobalite_ramp.extxyz.gz -o $OUT --frames 67:537:134 --max-sites 6 --properties efg
$A trajectories/amorphous_sio2.extxyz.gz -o $OUT --frames 5:20:10 --max-sites 10 --properties efg
for rho in $RHO; do $A $D/glass_${rho}gcc.extxyz.gz -o $OUT --frames 1:5:2 --max-sites 3 --properties ms; done
# round 0, shielding on two sites of each of the other round-0 frames
$L trajectories/cristobalite_300K.extxyz.gz -o $OUT --frames 0:2000:1000 --max-sites 2
$L trajectories/cristobalite_900K.extxyz.gz -o $OUT --frames 0:2000:1000 --max-sites 2
$L trajectories/cristobalite_ramp.extxyz.gz -o $OUT --frames 0:537:134 --max-sites 2
$L trajectories/amorphous_sio2.extxyz.gz -o $OUT --frames 0:20:10 --max-sites 2
# the test glasses (trajectories/make.py test-glass: other quenches at 2.2 and 2.6 g/cm3,
# never trained on): EFG and shielding on distinct atoms drawn at random over their five
# frames, the independent test set (studies/README.md, "Held-out frames of one glass are
# not independent"), in a file of its own that no training config names
TEST=trajectories/labels/test_glass.extxyz
for rho in 2.2 2.6; do
  $L $D/test_glass_${rho}gcc.extxyz.gz -o $TEST --frames 0:5 --max-sites 4 --new-atoms
  $L $D/test_glass_${rho}gcc.extxyz.gz -o $TEST --frames 0:5 --max-sites 8 --new-atoms --properties efg
done
# round 2, shielding first (the furthest from the issue's 150; each O shielding label brings its EFG):
# committee-chosen sites on the round-1 frames of the density series (a frame's labelled
# sites count towards --max-sites)
for rho in $RHO; do $A $D/glass_${rho}gcc.extxyz.gz -o $OUT --frames 1:5:2 --max-sites 12 --properties ms; done
# round 2, EFG, toward the issue's >= 400 O EFG labels: more committee-chosen sites on the
# round-1 frames of the density series (13-15 EFG sites a frame already, those of the
# shieldings included), the densest glass first, where the test glass misses eta_Q and
# C_Q most; then new frames of the hot crystal, the ramp and the 3,000-atom glass
$A $D/glass_2.6gcc.extxyz.gz -o $OUT --frames 1:5:2 --max-sites 30 --properties efg
for rho in 2.0 2.2 2.4; do $A $D/glass_${rho}gcc.extxyz.gz -o $OUT --frames 1:5:2 --max-sites 24 --properties efg; done
$A trajectories/cristobalite_900K.extxyz.gz -o $OUT --frames 250:2000:500 --max-sites 8 --properties efg
$A trajectories/cristobalite_ramp.extxyz.gz -o $OUT --frames 33:537:134 --max-sites 8 --properties efg
$A trajectories/amorphous_sio2.extxyz.gz -o $OUT --frames 2:20:5 --max-sites 16 --properties efg
# round 2, shielding on new frames of the 3,000-atom glass
$A trajectories/amorphous_sio2.extxyz.gz -o $OUT --frames 2:20:5 --max-sites 6 --properties ms
# Si-centred clusters (29Si trends against density; about 6 min each): one per density,
# after the 17O labels the issue counts
for rho in $RHO; do $L $D/glass_${rho}gcc.extxyz.gz -o $OUT --frames 0:1 --species Si --max-sites 1 --properties ms; done
