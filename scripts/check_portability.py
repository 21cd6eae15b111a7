#!/usr/bin/env python3
"""Check that .idf bitstreams do not depend on where or how they were made.

For every image: encode on the CPU (1 thread, 1 tile per batch) and again under other
settings (2 threads and 4 tiles per batch; for a model in the 8-bit arithmetic also with its
float32 backend instead of oneDNN's; on CUDA when a GPU is present); the files must be
byte-identical, and each must decode to the original pixels under every other setting (CPU
file decoded on the GPU and the reverse).

    python scripts/check_portability.py                 # 24 Kodak + 1000 CIFAR-10 test images
    python scripts/check_portability.py --kodak-limit 4 --cifar-limit 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from idfzip.zoo import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def settings(cuda: bool, int8: bool):
    """(label, device, threads, batch size, 8-bit backend or None for the default) of every
    configuration to compare."""
    out = [("cpu/1 thread/batch 1", "cpu", 1, 1, None),
           ("cpu/2 threads/batch 4", "cpu", 2, 4, None)]
    if int8:
        out.append(("cpu/2 threads/batch 2/float32 backend", "cpu", 2, 2, "float32"))
    if cuda:
        out.append(("cuda/batch 4", "cuda", 2, 4, None))
    return out


def check(images, model_name: str, tile: int, cuda: bool) -> int:
    import idfzip
    from idfzip.api import coding_model
    from idfzip.int8conv import use_backend
    from idfzip.int8net import ACTIVATION_TOPS
    from idfzip.intnet import arithmetic_of
    failures = 0
    configs = settings(cuda, arithmetic_of(coding_model(model_name).model) in ACTIVATION_TOPS)
    for n, arr in enumerate(images):
        image = Image.fromarray(arr)
        files = {}
        for label, device, threads, batch, backend in configs:
            torch.set_num_threads(threads)
            coder = coding_model(model_name).to(device)
            with use_backend(backend):
                files[label] = idfzip.compress(image, coder, tile=tile, batch_size=batch)
        reference = files[configs[0][0]]
        for label, data in files.items():
            if data != reference:
                failures += 1
                print(f"image {n}: file made on {label} differs from {configs[0][0]}")
        for label, device, threads, batch, backend in configs:
            torch.set_num_threads(threads)
            coder = coding_model(model_name).to(device)
            for made_on, data in files.items():
                with use_backend(backend):
                    back = np.asarray(idfzip.decompress(data, coder, batch_size=batch))
                if not np.array_equal(back, arr):
                    failures += 1
                    print(f"image {n}: file made on {made_on} decoded wrongly on {label}")
    print(f"{model_name}: compared " + "; ".join(label for label, *_ in configs))
    return failures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--kodak", default=str(SHARED / "kodak"))
    p.add_argument("--cifar", default=str(SHARED / "cifar10"))
    p.add_argument("--kodak-limit", type=int, default=24)
    p.add_argument("--cifar-limit", type=int, default=1000)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--cifar-model", default="cifar10")
    p.add_argument("--tile", type=int, default=256, help="small tiles exercise the tiling")
    args = p.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda:
        print("no CUDA device: comparing CPU thread counts and batch sizes only")
    from idfzip.data import load_cifar10
    kodak = [np.asarray(Image.open(f).convert("RGB"))
             for f in sorted(Path(args.kodak).glob("*.png"))[: args.kodak_limit]]
    cifar = list(load_cifar10(args.cifar, "test")[: args.cifar_limit].transpose(0, 2, 3, 1))
    failures = check(kodak, args.model, args.tile, cuda)
    print(f"kodak: {len(kodak)} images, {failures} mismatches")
    failures_c = check(cifar, args.cifar_model, args.tile, cuda)
    print(f"cifar10: {len(cifar)} images, {failures_c} mismatches")
    sys.exit(1 if failures or failures_c else 0)


if __name__ == "__main__":
    main()
