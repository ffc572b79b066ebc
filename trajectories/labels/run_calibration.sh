#!/usr/bin/env bash
# Calibration labels: 17O shielding and EFG on the calibration glasses (trajectories/make.py
# calibration-glass: two more quenches from other random starts, at 2.2 and 2.4 g/cm^3),
# at random sites (no model chooses them), distinct atoms over each glass's five frames,
# in a file of its own that trains and tests nothing: the sites a committee's spread is
# calibrated on (a config's calibration_only data item; studies/recalibrate.py
# --calibration). The protocol of the test glasses (run_md.sh), shieldings first (each
# brings its EFG; the 17O shielding factor is the one the validation split cannot fix).
# Same method as run.sh (README.md: Method). Every line resumes where it stopped:
#     nohup bash trajectories/labels/run_calibration.sh > trajectories/labels/run_calibration.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
L="${DYNNMR:-.venv/bin/dynnmr} label --threads ${THREADS:-1}"
D=trajectories/densities
CAL=trajectories/labels/calibration_glass.extxyz
for rho in 2.2 2.4; do $L $D/calibration_glass_${rho}gcc.extxyz.gz -o $CAL --frames 0:5 --max-sites 4 --new-atoms; done
for rho in 2.2 2.4; do
  $L $D/calibration_glass_${rho}gcc.extxyz.gz -o $CAL --frames 0:5 --max-sites 8 --new-atoms --properties efg
done
