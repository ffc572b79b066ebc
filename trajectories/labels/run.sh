#!/usr/bin/env bash
# Reference labels for the sio2 model: B3LYP/pcSseg-1 EFG and GIAO shielding of
# H-capped site-centred clusters (dynnmr label). Every line resumes where it stopped,
# so the whole script can be rerun after an interruption; results land in
# trajectories/labels/sio2_clusters.extxyz one site at a time.
#     nohup bash trajectories/labels/run.sh > trajectories/labels/run.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
L="${DYNNMR:-.venv/bin/dynnmr} label"
OUT=trajectories/labels/sio2_clusters.extxyz
# These lines ran on the Tersoff trajectories of commit 223a7ed (README.md: which
# trajectories); TRAJ_DIR points at a folder holding those files.
T=${TRAJ_DIR:-trajectories}
# experimental crystals: all O (and all Si) are equivalent by symmetry, one site each
$L dynnmr/data/alpha_quartz.extxyz -o $OUT --species O --max-sites 1
$L dynnmr/data/alpha_cristobalite.extxyz -o $OUT --species O --max-sites 1
# shielding and EFG: alpha (0), mid-ramp (275) and beta (550) cristobalite, and the glass
$L $T/cristobalite_ramp.extxyz.gz -o $OUT --frames 0:551:275 --max-sites 4
$L $T/amorphous_sio2.extxyz.gz -o $OUT --frames 0:1 --max-sites 10
# EFG only, many more sites over the ramp, the isotherms (frames 0, 500, 1000, 1500 of
# 2,000) and the glass
$L $T/cristobalite_ramp.extxyz.gz -o $OUT --frames 0:551:50 --max-sites 12 --properties efg
$L $T/amorphous_sio2.extxyz.gz -o $OUT --frames 0:1 --max-sites 200 --properties efg
$L $T/cristobalite_300K.extxyz.gz -o $OUT --frames 0:2000:500 --max-sites 12 --properties efg
$L $T/cristobalite_900K.extxyz.gz -o $OUT --frames 0:2000:500 --max-sites 12 --properties efg
# Si-centred clusters (Si(OSiH3)4-like, about 6 min each), to compare with periodic 29Si;
# before the long shielding block, so that the comparison (studies.py si) can start early
$L dynnmr/data/alpha_quartz.extxyz -o $OUT --species Si --max-sites 1 --properties ms
$L $T/cristobalite_ramp.extxyz.gz -o $OUT --frames 0:551:275 --species Si --max-sites 4 --properties ms
$L $T/amorphous_sio2.extxyz.gz -o $OUT --frames 0:1 --species Si --max-sites 10 --properties ms
# more shielding on the sites that already have an EFG
$L $T/cristobalite_ramp.extxyz.gz -o $OUT --frames 0:551:50 --max-sites 6
# and on the isotherm frames (6 of each frame's 12; added 2026-12-02), so that both test
# frames of the sio2 split (4 and 18, the 900 K frame 0) have O shieldings; crystalline
# clusters also cost less than the glass ones (about 70 against 95 s)
$L $T/cristobalite_300K.extxyz.gz -o $OUT --frames 0:2000:500 --max-sites 6
$L $T/cristobalite_900K.extxyz.gz -o $OUT --frames 0:2000:500 --max-sites 6
$L $T/amorphous_sio2.extxyz.gz -o $OUT --frames 0:1 --max-sites 80
