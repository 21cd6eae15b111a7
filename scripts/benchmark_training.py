#!/usr/bin/env python3
"""Time one training step (forward, backward, Adamax update) of a preset at each precision.

    python scripts/benchmark_training.py                      # photo, batch 16 x 64², 1 thread
    python scripts/benchmark_training.py --preset cifar10 --batch-size 32 --crop 32
    python scripts/benchmark_training.py --preset photo-ycocg --hidden 128   # widened

The model is laid out as ``idfzip train`` lays it out (channels-last weights). Random pixels
and randomly perturbed weights: the time of a step does not depend on what it
learns. Prints ms per step and training pixels per second for float32 and bfloat16 (see
``idfzip train --precision``), so the faster one can be picked for a machine.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from idfzip.model import IntegerDiscreteFlow
from idfzip.nets import PRECISIONS, set_precision
from idfzip.zoo import PRESETS


def seconds_per_step(model, x, precision: str, steps: int, warmup: int = 2) -> float:
    set_precision(model, precision)
    optimizer = torch.optim.Adamax(model.parameters(), lr=1e-4)
    for i in range(warmup + steps):
        if i == warmup:
            started = time.perf_counter()
        loss = model(x).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="photo")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--hidden", type=int, default=None,
                   help="width of every network (hidden and prior_hidden; default the preset's)")
    args = p.parse_args()
    config = PRESETS[args.preset]
    if args.hidden:
        config = replace(config, hidden=args.hidden, prior_hidden=args.hidden)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = IntegerDiscreteFlow(config).to(args.device, memory_format=torch.channels_last)
    with torch.no_grad():  # away from the zero-initialised identity, as in a trained model
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.01)
    channels = config.channels
    x = torch.randint(0, 256, (args.batch_size, channels, args.crop, args.crop),
                      device=args.device).float()
    print(f"{args.preset} (hidden {config.hidden}), batch {args.batch_size} x {args.crop}², "
          f"{args.threads} thread(s), {args.device}")
    for precision in PRECISIONS:
        t = seconds_per_step(model, x, precision, args.steps)
        print(f"  {precision:9s} {1000 * t:7.1f} ms/step  {x.numel() / t / 1e6:6.2f} M dims/s")


if __name__ == "__main__":
    main()
