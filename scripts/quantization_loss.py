#!/usr/bin/env python3
"""How much an integer export costs: -log2 p(x) in bpd under the float model and under its
integer export (the one the coder uses), on Kodak and CIFAR-10 test.

    python scripts/quantization_loss.py --model runs/photo/model.pt --cifar-model cifar10
    python scripts/quantization_loss.py --model photo --cifar-model cifar10 \\
        --arithmetic int8 --calibrate

A shipped (integer) model stands for its float weights (``intnet.to_float``). ``--parts`` also
scores the export's weights in a float network (``to_float`` of the export: every weight, bias
and output factor on its grid, activations unrounded), which splits the cost into what the
weight grids and what the activation grid take. With
``--calibrate`` the float model's hidden activations are first rescaled to fill the 8-bit grid
(``calibration.fill_activation_range``, which leaves the float model's bpd as it was) on
training images: 16 photo crops (256x256) from ``photos_train/crops.npz`` and 256 CIFAR-10 training
images; never on the test images.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def float_and_integer(name: str, arithmetic: str, calibration: np.ndarray | None):
    from idfzip.calibration import fill_activation_range
    from idfzip.intnet import to_float, to_integer
    from idfzip.zoo import load_model
    model = load_model(name)
    if model.is_integer:
        model = to_float(model)
    if calibration is not None:
        fill_activation_range(model, torch.from_numpy(calibration).float())
    return model, to_integer(copy.deepcopy(model), arithmetic)


def bpd(model, images, batch: int = 100) -> float:
    bits = dims = 0.0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.stack(images[i: i + batch]))
            bits += float(-model.log_prob(x).sum())
            dims += x.numel()
    return bits / dims


def main() -> None:
    from idfzip.intnet import ARITHMETICS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="photo model (name or path)")
    p.add_argument("--cifar-model", required=True, help="CIFAR-10 model (name or path)")
    p.add_argument("--arithmetic", choices=list(ARITHMETICS), default="limb")
    p.add_argument("--calibrate", action="store_true",
                   help="rescale the activations on training images first (for int8)")
    p.add_argument("--parts", action="store_true",
                   help="also split the loss into the weight grids' and the activations'")
    p.add_argument("--kodak", default=str(SHARED / "kodak"))
    p.add_argument("--cifar", default=str(SHARED / "cifar10"))
    p.add_argument("--photo-crops", default=str(SHARED / "photos_train" / "crops.npz"))
    p.add_argument("--cifar-limit", type=int, default=2000)
    args = p.parse_args()
    from idfzip.data import load_cifar10
    kodak = [np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1).copy()
             for f in sorted(Path(args.kodak).glob("*.png"))]
    cifar = list(load_cifar10(args.cifar, "test")[: args.cifar_limit])
    photo_cal = cifar_cal = None
    if args.calibrate:
        photo_cal = np.load(args.photo_crops)["x"][:16].transpose(0, 3, 1, 2).copy()
        cifar_cal = np.asarray(load_cifar10(args.cifar, "train")[:256])
    for label, name, images, batch, cal in [("kodak", args.model, kodak, 1, photo_cal),
                                            ("cifar10", args.cifar_model, cifar, 100, cifar_cal)]:
        fl, it = float_and_integer(name, args.arithmetic, cal)
        a, b = bpd(fl, images, batch), bpd(it, images, batch)
        print(f"{label}: float {a:.5f} bpd, {args.arithmetic} {b:.5f} bpd, loss {b - a:+.5f} "
              f"bpd ({len(images)} images)", flush=True)
        if args.parts:
            from idfzip.intnet import to_float
            w = bpd(to_float(it), images, batch)
            print(f"{label}: weights on the grid {w - a:+.5f} bpd, then activations on the "
                  f"grid {b - w:+.5f} bpd", flush=True)


if __name__ == "__main__":
    main()
