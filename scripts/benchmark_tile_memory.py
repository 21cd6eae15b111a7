#!/usr/bin/env python3
"""Peak memory and time of coding one large tile: compress a SIDE x SIDE photo with
``--tile TILE``, then decompress it in a fresh process, reporting each one's peak resident
memory (ru_maxrss) and seconds; every decode is compared with the image.

    python scripts/benchmark_tile_memory.py                       # 2048x2048, one 2048 tile
    python scripts/benchmark_tile_memory.py --image big.png --tile 1024 --threads 2

The photo is a mosaic of the Kodak photos (``--kodak``) unless ``--image`` is given. With
PYTHONPATH pointing at another idfzip checkout, the same measurement runs on that version
(by default, on this one).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system time of this process's threads: less disturbed than wall time by other
    work on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(args) -> None:
    """One side of the measurement in this (fresh) process; prints a JSON line."""
    import numpy as np
    import torch
    from PIL import Image

    import idfzip
    torch.set_num_threads(args.threads)
    if args.child == "compress":
        image = Image.open(args.image)
        image.load()
        start, cpu = time.perf_counter(), cpu_seconds()
        data = idfzip.compress(image, args.model, tile=args.tile, batch_size=args.batch_size,
                               device=args.device)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        Path(args.idf).write_bytes(data)
        extra = {"bytes": len(data)}
    else:
        data = Path(args.idf).read_bytes()
        start, cpu = time.perf_counter(), cpu_seconds()
        back = idfzip.decompress(data, batch_size=args.batch_size, device=args.device)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        with Image.open(args.image) as original:
            extra = {"ok": bool(np.array_equal(np.asarray(back), np.asarray(original)))}
    print(json.dumps({"step": args.child, "seconds": round(seconds, 2),
                      "cpu_seconds": round(cpu, 2), "peak_mb": round(peak_mb()), **extra}))


def mosaic(kodak: Path, side: int, out: Path) -> None:
    """The photo benchmark_speed.py measures memory on: Kodak photos side by side."""
    from PIL import Image

    from benchmark_speed import photo_mosaic
    Image.fromarray(photo_mosaic(sorted(kodak.glob("*.png")), side, side)).save(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--side", type=int, default=2048)
    p.add_argument("--tile", type=int, default=2048)
    p.add_argument("--image", default=None, help="code this image instead of a mosaic")
    p.add_argument("--kodak", default=str(REPO.parent / "shared" / "data" / "kodak"))
    p.add_argument("--model", default="photo")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", default="/tmp/idfzip-tile-memory", help="folder for the files")
    p.add_argument("--child", choices=["compress", "decompress"], help=argparse.SUPPRESS)
    p.add_argument("--idf", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    image = Path(args.image) if args.image else work / f"mosaic{args.side}.png"
    if not args.image and not image.exists():
        mosaic(Path(args.kodak), args.side, image)
    idf = work / f"{image.stem}-tile{args.tile}.idf"
    common = [sys.executable, __file__, "--image", str(image), "--idf", str(idf),
              "--tile", str(args.tile), "--model", args.model, "--batch-size",
              str(args.batch_size), "--threads", str(args.threads), "--device", args.device]
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or str(REPO)}
    for step in ("compress", "decompress"):
        out = subprocess.run(common + ["--child", step], capture_output=True, text=True, env=env)
        if out.returncode:
            raise SystemExit(out.stderr)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
