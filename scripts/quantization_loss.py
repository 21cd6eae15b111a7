#!/usr/bin/env python3
"""How much the integer export costs: -log2 p(x) in bpd under the float model and under its
integer export (the one the coder uses), on Kodak and CIFAR-10 test.

    python scripts/quantization_loss.py --model runs/photo/model.pt --cifar-model cifar10
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


def float_and_integer(name: str):
    from idfzip.intnet import to_integer
    from idfzip.zoo import load_model
    model = load_model(name)
    if model.is_integer:
        raise SystemExit(f"{name} is already an integer export; give the float model.pt")
    return model, to_integer(copy.deepcopy(model))


def bpd(model, images, batch: int = 100) -> float:
    bits = dims = 0.0
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.stack(images[i: i + batch]))
        bits += float(-model.log_prob(x).sum())
        dims += x.numel()
    return bits / dims


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="float photo model (name or path)")
    p.add_argument("--cifar-model", required=True, help="float CIFAR-10 model (name or path)")
    p.add_argument("--kodak", default=str(SHARED / "kodak"))
    p.add_argument("--cifar", default=str(SHARED / "cifar10"))
    p.add_argument("--cifar-limit", type=int, default=2000)
    args = p.parse_args()
    from idfzip.data import load_cifar10
    kodak = [np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1).copy()
             for f in sorted(Path(args.kodak).glob("*.png"))]
    cifar = list(load_cifar10(args.cifar, "test")[: args.cifar_limit])
    for label, name, images, batch in [("kodak", args.model, kodak, 1),
                                       ("cifar10", args.cifar_model, cifar, 100)]:
        fl, it = float_and_integer(name)
        a, b = bpd(fl, images, batch), bpd(it, images, batch)
        print(f"{label}: float {a:.5f} bpd, integer {b:.5f} bpd, loss {b - a:+.5f} bpd "
              f"({len(images)} images)")


if __name__ == "__main__":
    main()
