#!/usr/bin/env python3
"""Bits per dimension of idfzip against classic lossless codecs, on Kodak and CIFAR-10 test.

bpd = total bits / total dims over a data set (real file sizes, headers included). For idfzip
it also reports the model's -log2 p(x), compress/decompress MB/s of raw pixels and peak memory;
every codec's output is decoded and compared with the input.

    python scripts/benchmark_bpd.py                       # Kodak + all 10,000 CIFAR-10 test
    python scripts/benchmark_bpd.py --limit 500 --out results/
    python scripts/benchmark_bpd.py --images my_photos/ --datasets images

Other codecs come from the optional ``bench`` extra (``pip install -e ".[bench]"``); a codec
that is not installed is skipped, and the output says so.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reference_codecs import imagecodecs_codecs, pil_codec, run_codec

from idfzip.zoo import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def load_dataset(name: str, args) -> list[np.ndarray]:
    """(H, W, 3) uint8 images of a data set."""
    if name == "kodak":
        folder = Path(args.kodak)
        files = sorted(folder.glob("*.png"))[: args.limit or None]
        return [np.asarray(Image.open(f).convert("RGB")) for f in files]
    if name == "cifar10":
        from idfzip.data import load_cifar10
        x = load_cifar10(args.cifar, "test")[: args.limit or None]
        return list(x.transpose(0, 2, 3, 1))
    from idfzip.imageio import image_files
    files = image_files(args.images)[: args.limit or None]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def run_idfzip(images, args):
    import idfzip
    from idfzip.api import coding_model
    coder = coding_model(args.model)
    bits = ideal = 0.0
    t_enc = t_dec = 0.0
    for arr in images:
        t = time.perf_counter()
        data = idfzip.compress(Image.fromarray(arr), coder, tile=args.tile,
                               batch_size=args.batch_size)
        t_enc += time.perf_counter() - t
        t = time.perf_counter()
        back = idfzip.decompress(data, coder, batch_size=args.batch_size)
        t_dec += time.perf_counter() - t
        if not np.array_equal(np.asarray(back), arr):
            raise SystemExit("idfzip round trip FAILED")
        bits += 8 * len(data)
        x = torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]
        ideal += float(-coder.model.log_prob(x)[0])
    return bits, ideal, t_enc, t_dec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--datasets", default="kodak,cifar10",
                   help="comma list of kodak, cifar10, images")
    p.add_argument("--kodak", default=str(SHARED / "kodak"))
    p.add_argument("--cifar", default=str(SHARED / "cifar10"))
    p.add_argument("--images", default=None, help="folder of images for the 'images' data set")
    p.add_argument("--limit", type=int, default=0, help="first N images of each data set")
    p.add_argument("--model", default=DEFAULT_MODEL, help="idfzip model name or path")
    p.add_argument("--cifar-model", default="cifar10", help="model for the cifar10 data set")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-others", action="store_true", help="idfzip only")
    p.add_argument("--out", default=None, help="folder for results.md and bpd.png")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    others = {"PNG": pil_codec("PNG", optimize=True),
              "WebP lossless m6": pil_codec("WEBP", lossless=True, method=6, quality=100)}
    extra, note = imagecodecs_codecs()
    others.update(extra)
    if args.skip_others:
        others, note = {}, ""
    if note:
        print(f"note: {note}", file=sys.stderr)

    rows = []
    for name in args.datasets.split(","):
        images = load_dataset(name, args)
        if not images:
            raise SystemExit(f"{name}: no images found")
        dims = sum(a.size for a in images)
        mb = dims / 1e6
        model = args.cifar_model if name == "cifar10" else args.model
        run_args = argparse.Namespace(**{**vars(args), "model": model})
        bits, ideal, te, td = run_idfzip(images, run_args)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append((name, f"idfzip ({model})", bits / dims, ideal / dims, mb / te, mb / td, peak))
        print(f"{name}: idfzip {bits / dims:.4f} bpd (model -log2 p {ideal / dims:.4f}), "
              f"{mb / te:.3f} / {mb / td:.3f} MB/s, peak RSS {peak:.0f} MB", flush=True)
        for codec, (enc, dec) in others.items():
            bits, te, td = run_codec(images, enc, dec)
            rows.append((name, codec, bits / dims, None, mb / te, mb / td, None))
            print(f"{name}: {codec} {bits / dims:.4f} bpd", flush=True)
        print(f"{name}: {len(images)} images, {dims} dims", flush=True)

    table = ["| data set | codec | bpd (files) | model -log2 p | compress MB/s | "
             "decompress MB/s | peak RSS MB |", "|---|---|---|---|---|---|---|"]
    for ds, codec, bpd, ideal, enc, dec, peak in rows:
        table.append(f"| {ds} | {codec} | {bpd:.3f} | {'' if ideal is None else f'{ideal:.3f}'} "
                     f"| {enc:.2f} | {dec:.2f} | {'' if peak is None else f'{peak:.0f}'} |")
    print("\n".join(table))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text("\n".join(table) + "\n")
        plot(rows, out / "bpd.png")


def plot(rows, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib not installed; no chart", file=sys.stderr)
        return
    datasets = sorted({r[0] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        sel = [r for r in rows if r[0] == ds]
        ax.barh([r[1] for r in sel], [r[2] for r in sel],
                color=["tab:red" if r[1].startswith("idfzip") else "tab:gray" for r in sel])
        ax.set_title(f"{ds}: bits per dimension (lower is better)")
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
