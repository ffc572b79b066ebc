"""Teacher labels for distillation: a model's 17O tensors on unlabelled MD frames.

A committee of two trunks (the bundled ``sio2-x2``) is more accurate than one trunk of
the same recipe, because averaging two trainings removes the error that changes from one
training to the next; but it costs twice as much to run. Distillation trains one trunk
on the DFT labels plus the committee's predictions on many more sites of the same kind
of structures, so that the student can learn the committee's smoother function. This
script writes those predictions as a label file:

    python studies/distill.py sio2-x2 -o runs/teacher.extxyz \\
        trajectories/densities/glass_2.0gcc.extxyz.gz:1,3 ...

One frame per ``FILE:FRAMES`` item (comma-separated frame numbers), O sites only (ms and
efg, the teacher's units: ppm and atomic units, on the training level, i.e. the EFG with
the cluster scale already applied, so the config must not scale it again). Sites that
hold a DFT label in ``--exclude`` (the same source file and frame) are left out, so that
no site has two targets. Name the file with ``train_only: true`` in the config: teacher
labels must never validate, calibrate or test. Choose frames that no test set uses.
"""

import argparse
from pathlib import Path

import numpy as np

from dynnmr import tensorfiles
from dynnmr.inference import predict_images
from dynnmr.label import labelled_atoms
from dynnmr.modelfile import load_model


def labelled_sites(label_files):
    """``{(source file name, frame): set of atom indices with any DFT label}``."""
    done = {}
    for path in label_files:
        for atoms in tensorfiles.read(path):
            for source, sites in labelled_atoms([atoms]).items():  # one frame: its own sites
                done.setdefault((Path(source).name, int(atoms.info["source_frame"])), set()).update(sites)
    return done


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", help="bundled model name or model file")
    p.add_argument("frames", nargs="+", help="FILE:F1,F2,... trajectory frames to label")
    p.add_argument("-o", "--out", required=True, help="extended XYZ to write")
    p.add_argument("--exclude", nargs="*", default=["trajectories/labels/sio2_md.extxyz"],
                   help="DFT label files whose sites are left out")  # fmt: skip
    args = p.parse_args()
    net, info = load_model(args.teacher)
    method = f"teacher model {info['name']} (sha256 {info['sha256'][:12]})"
    done = labelled_sites(args.exclude)
    images = []
    for item in args.frames:
        path, _, frames = item.rpartition(":")
        for k in (int(f) for f in frames.split(",")):
            (out,) = tensorfiles.read(path, index=str(k))
            predict_images(net, info, [out], uncertainty=False)
            keep = out.numbers == 8
            keep[sorted(done.get((Path(path).name, k), ()))] = False
            for t in ("ms", "efg"):
                out.arrays[t][~keep] = np.nan
            out.info.update(source=Path(path).name, source_frame=k, label_method=method)
            images.append(out)
            print(f"{path} frame {k}: {int(keep.sum())} O sites", flush=True)
    tensorfiles.write_extxyz(args.out, images)
    n_sites = sum(int(np.isfinite(a.arrays["efg"][:, 0, 0]).sum()) for a in images)
    print(f"wrote {args.out}: {len(images)} frames, {n_sites} O sites")


if __name__ == "__main__":
    main()
