#!/usr/bin/env python3
"""Speed and memory of idfzip against the targets, with JPEG-XL measured in the same run.

* Kodak: compress and decompress MB/s of raw pixels with the default model (real .idf files,
  every one decoded and compared), beside JPEG-XL lossless effort 7 and 9 on the same images
  and thread count; where the time goes (network, entropy coding, the rest) on one photo.
* Sweep (``--sweep``): the same for networks 64 / 128 / 256 wide in the default model's
  layout, each exported to the limb and to an 8-bit arithmetic (``--sweep-arithmetic``, w8a8
  by default), beside JPEG-XL in the same run. The 64-wide one is the float weights of
  ``photo``'s last 64-wide release (``SWEEP_BASE``); the wider ones hold them in their first 64 channels and small random
  weights in the others (so they code like it, through the flow, at the wider networks' cost:
  their speed is what the table is for).
* Memory: peak resident memory of compressing and decompressing a 6000x4000 RGB photo (a
  mosaic of the Kodak photos) in a fresh process.

    python scripts/benchmark_speed.py                    # CPU, all cores
    python scripts/benchmark_speed.py --device cuda      # networks on the GPU
    python scripts/benchmark_speed.py --limit 4 --skip-memory --out results/
    python scripts/benchmark_speed.py --sweep --limit 8 --threads 2 --out results/

Targets (README): CPU (2 cores) at least 0.5 MB/s each way; GPU at least 20 MB/s each way;
peak memory under 2 GB for 6000x4000 on CPU.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reference_codecs import imagecodecs_codecs, run_codec

from idfzip.int8net import ACTIVATION_TOPS
from idfzip.zoo import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
TARGET_MBS = {"cpu": 0.5, "cuda": 20.0}
MEMORY_TARGET_MB = 2048
# The sweep's base: photo release e28d14b3, the last 64 wide (the default is wider since), kept
# in zoo.EARLIER; every width of the sweep is grown from it.
SWEEP_BASE = ("photo", "e28d14b3")


def idfzip_round_trips(images, coder, args):
    """Total .idf bits and compress / decompress seconds; fails on any mismatch."""
    import idfzip
    bits, t_enc, t_dec = 0, 0.0, 0.0
    for arr in images:
        t = time.perf_counter()
        data = idfzip.compress(Image.fromarray(arr), coder, tile=args.tile,
                               batch_size=args.batch_size, device=args.device)
        t_enc += time.perf_counter() - t
        t = time.perf_counter()
        back = idfzip.decompress(data, coder, batch_size=args.batch_size, device=args.device)
        t_dec += time.perf_counter() - t
        if not np.array_equal(np.asarray(back), arr):
            raise SystemExit("idfzip round trip FAILED")
        bits += 8 * len(data)
    return bits, t_enc, t_dec


def cpu_name() -> str:
    """The CPU's model name and the vector units PyTorch uses on it (timings vary with both)."""
    name = "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def classical_rows(images, mb: float, threads: int) -> list[tuple[str, float, float, float]]:
    """(codec, bpd, compress MB/s, decompress MB/s) of JPEG-XL effort 7 and 9."""
    codecs, note = imagecodecs_codecs(threads)
    if note:
        print(f"note: {note}", file=sys.stderr)
    rows = []
    for name in ("JPEG-XL e7", "JPEG-XL e9"):
        if name in codecs:
            b, te, td = run_codec(images, *codecs[name])
            rows.append((f"{name} ({threads} threads)", b / (mb * 1e6), mb / te, mb / td))
    return rows


def sweep(images, mb: float, args, device: str, others: list) -> str:
    """The width x arithmetic table (see the module docstring), every file decoded and
    compared; the 8-bit rows name the backend that ran them."""
    import tempfile

    import idfzip
    from idfzip.api import coding_model
    from idfzip.int8conv import backend_for
    eight_bit = args.sweep_arithmetic
    backend = backend_for(torch.device(args.device), ACTIVATION_TOPS[eight_bit])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, path in sweep_models(Path(folder), eight_bit):
            coder = coding_model(str(path), args.device)
            idfzip.decompress(idfzip.compress(images[0], coder, device=args.device), coder,
                              device=args.device)  # warm-up
            bits, t_enc, t_dec = idfzip_round_trips(images, coder, args)
            if eight_bit in label:
                label += f", {backend}"
            rows.append((label, bits / (mb * 1e6), mb / t_enc, mb / t_dec))
            print(f"{label}: {rows[-1][2]:.2f} / {rows[-1][3]:.2f} MB/s", file=sys.stderr)
    lines = [f"Kodak ({len(images)} images, {mb:.1f} MB of raw pixels), {device}", "",
             "| codec | bpd | compress MB/s | decompress MB/s |", "|---|---|---|---|"]
    lines += [f"| {n} | {b:.3f} | {e:.2f} | {d:.2f} |" for n, b, e, d in rows + others]
    return "\n".join(lines)


def sweep_models(folder: Path, eight_bit: str = "w8a8",
                 widths=(64, 128, 256)) -> list[tuple[str, Path]]:
    """(label, model file) for each width of the sweep, exported to the limb and to the 8-bit
    arithmetic ``eight_bit``, written to ``folder``. The 8-bit exports are calibrated first
    (``calibration.fill_activation_range``) on 16 training crops where ../shared/data has them:
    an uncalibrated export codes ~0.5 bpd worse, and its many out-of-table symbols slow the
    coder down, which is not what is measured."""
    import copy
    from dataclasses import replace

    from idfzip.calibration import fill_activation_range
    crops_file = SHARED / "photos_train" / "crops.npz"
    crops = (torch.from_numpy(np.load(crops_file)["x"][:16].transpose(0, 3, 1, 2).copy()).float()
             if crops_file.exists() else None)

    from idfzip.intnet import to_float, to_integer
    from idfzip.model import IntegerDiscreteFlow
    from idfzip.weights import save_model
    from idfzip.zoo import load_model
    name, release = SWEEP_BASE
    base = load_model(name, model_id=bytes.fromhex(release))
    if base.config.hidden > min(widths):
        raise ValueError(f"sweep base {name} {release} is {base.config.hidden} wide, wider "
                         f"than the sweep's {min(widths)}")
    out = []
    for width in widths:
        trained = to_float(copy.deepcopy(base))
        model = IntegerDiscreteFlow(replace(trained.config, hidden=width, prior_hidden=width))
        torch.manual_seed(width)
        with torch.no_grad():
            wide = dict(model.named_parameters())
            for name, small in trained.named_parameters():
                big = wide[name]
                if big.shape != small.shape:
                    big.normal_(std=1e-3)
                big[tuple(slice(0, n) for n in small.shape)] = small
            model.load_state_dict(model.state_dict() | {
                k: v for k, v in trained.state_dict().items() if k not in wide})
        for arithmetic in ("limb", eight_bit):
            path = folder / f"w{width}-{arithmetic}.pt"
            export = copy.deepcopy(model)
            calibrated = arithmetic == eight_bit and crops is not None
            if calibrated:
                fill_activation_range(export, crops)
            save_model(to_integer(export, arithmetic), path)
            out.append((f"{width} wide, {arithmetic}" + (" (calibrated)" if calibrated else ""),
                        path))
    return out


def time_shares(call) -> dict[str, float]:
    """Fractions of ``call``'s time spent in the integer networks, in entropy coding, in the
    PNG fallback candidate, and elsewhere (Python, tiling, checksums), from cProfile."""
    from idfzip import api, entropy
    from idfzip.intnet import ExactNet

    def key(f):
        code = f.__code__
        return code.co_filename, code.co_firstlineno, code.co_name
    parts = {"network": [ExactNet.forward],
             "entropy coding": [entropy.encode_logistic, entropy.decode_logistic,
                                entropy.MixtureTables.encode, entropy.MixtureTables.decode,
                                entropy.MixtureCoder.encode, entropy.MixtureCoder.decode],
             "PNG candidate": [api._png]}
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.runcall(call)
    total = time.perf_counter() - start
    stats = pstats.Stats(profile).stats
    shares = {part: sum(stats[key(f)][3] for f in functions if key(f) in stats) / total
              for part, functions in parts.items()}
    shares["other"] = 1.0 - sum(shares.values())
    return shares


def photo_mosaic(files, height: int, width: int) -> np.ndarray:
    """A (height, width, 3) photo made of different photos side by side (portrait ones turned):
    no repeats within a row, so PNG cannot win by matching copies and the flow path is what
    gets measured (an upscaled photo is so smooth that PNG would code it instead)."""
    photos = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    photos = [p if p.shape[1] >= p.shape[0] else p.transpose(1, 0, 2) for p in photos]
    if not photos or any(p.shape != photos[0].shape for p in photos):
        raise SystemExit("the mosaic needs photos of one size (Kodak)")
    h, w = photos[0].shape[:2]
    rows, cols = -(-height // h), -(-width // w)
    mosaic = np.concatenate([np.concatenate([photos[(i * cols + j) % len(photos)]
                                             for j in range(cols)], axis=1)
                             for i in range(rows)], axis=0)
    return np.ascontiguousarray(mosaic[:height, :width])


def memory_child(args) -> None:
    """Compress and decompress one large photo in this (fresh) process; print a JSON line."""
    import idfzip
    from idfzip.api import coding_model, describe
    torch.set_num_threads(args.threads or torch.get_num_threads())
    width, height = map(int, args.memory_child.split("x"))
    arr = photo_mosaic(sorted(Path(args.kodak).glob("*.png")), height, width)
    coder = coding_model(args.model, args.device)
    t = time.perf_counter()
    data = idfzip.compress(Image.fromarray(arr), coder, tile=args.tile,
                           batch_size=args.batch_size, device=args.device)
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    back = idfzip.decompress(data, coder, batch_size=args.batch_size, device=args.device)
    t_dec = time.perf_counter() - t
    print(json.dumps({"ok": bool(np.array_equal(np.asarray(back), arr)),
                      "method": describe(data)["method"],
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "bpd": 8 * len(data) / arr.size, "mb": arr.size / 1e6,
                      "compress_s": t_enc, "decompress_s": t_dec}))


def measure_memory(args) -> dict:
    cmd = [sys.executable, __file__, "--memory-child", args.memory_size, "--device", "cpu",
           "--model", args.model, "--tile", str(args.tile), "--batch-size", str(args.batch_size),
           "--kodak", args.kodak]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kodak", default=str(SHARED / "kodak"))
    p.add_argument("--limit", type=int, default=0, help="first N Kodak images")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--memory-size", default="6000x4000", help="WxH of the memory test photo")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-others", action="store_true", help="no JPEG-XL")
    p.add_argument("--sweep-arithmetic", choices=list(ACTIVATION_TOPS), default="w8a8",
                   help="the sweep's 8-bit arithmetic (w8a8: the shipped 8-bit models')")
    p.add_argument("--sweep", action="store_true",
                   help="widths 64/128/256 x limb/8-bit arithmetic instead of --model")
    p.add_argument("--out", default=None, help="folder for speed.md")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        return memory_child(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    files = sorted(Path(args.kodak).glob("*.png"))[: args.limit or None]
    if not files:
        raise SystemExit(f"{args.kodak}: no Kodak images")
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    mb = sum(a.size for a in images) / 1e6

    device = (torch.cuda.get_device_name() if args.device == "cuda"
              else f"{cpu_name()}, {threads} threads ({os.cpu_count()} cores visible)")
    others = [] if args.skip_others else classical_rows(images, mb, threads)
    if args.sweep:
        text = sweep(images, mb, args, device, others)
        print(text)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "speed_sweep.md").write_text(text + "\n")
        return

    import idfzip
    from idfzip.api import coding_model
    t = time.perf_counter()
    coder = coding_model(args.model, args.device)
    load_s = time.perf_counter() - t
    idfzip.decompress(idfzip.compress(images[0], coder, device=args.device), coder,
                      device=args.device)  # warm-up: tables, allocator, kernels
    bits, t_enc, t_dec = idfzip_round_trips(images, coder, args)
    first = Image.fromarray(images[0])
    data = idfzip.compress(first, coder, tile=args.tile, batch_size=args.batch_size,
                           device=args.device)
    enc_shares = time_shares(lambda: idfzip.compress(first, coder, tile=args.tile,
                                                     batch_size=args.batch_size,
                                                     device=args.device))
    dec_shares = time_shares(lambda: idfzip.decompress(data, coder, batch_size=args.batch_size,
                                                       device=args.device))
    rows = [(f"idfzip ({args.model}, {args.device})", bits / (mb * 1e6), mb / t_enc, mb / t_dec),
            *others]

    target = TARGET_MBS[args.device]
    lines = [f"Kodak ({len(images)} images, {mb:.1f} MB of raw pixels), {device}; model load "
             f"{load_s:.1f} s (not counted)", "",
             "| codec | bpd | compress MB/s | decompress MB/s |", "|---|---|---|---|"]
    lines += [f"| {n} | {b:.3f} | {e:.2f} | {d:.2f} |" for n, b, e, d in rows]
    ok = lambda v: "meets" if v >= target else "misses"  # noqa: E731
    lines += ["", f"Target {target} MB/s each way: compress {ok(mb / t_enc)}, "
              f"decompress {ok(mb / t_dec)} ({mb / t_enc:.2f} / {mb / t_dec:.2f} MB/s).", "",
              "Where the time goes (one photo, cProfile):", "",
              "| | " + " | ".join(enc_shares) + " |", "|---" * (len(enc_shares) + 1) + "|"]
    for label, shares in (("compress", enc_shares), ("decompress", dec_shares)):
        lines.append(f"| {label} | " + " | ".join(f"{100 * v:.0f}%" for v in shares.values())
                     + " |")
    if not args.skip_memory:
        m = measure_memory(args)
        if not m["ok"]:
            raise SystemExit("large photo round trip FAILED")
        verdict = "meets" if m["peak_mb"] < MEMORY_TARGET_MB else "misses"
        lines += ["", f"{args.memory_size} RGB photo on CPU ({m['mb']:.0f} MB raw, "
                  f"{m['bpd']:.3f} bpd, method {m['method']}): peak RSS {m['peak_mb']:.0f} MB ({verdict} the "
                  f"{MEMORY_TARGET_MB} MB target); compress {m['mb'] / m['compress_s']:.2f} MB/s, "
                  f"decompress {m['mb'] / m['decompress_s']:.2f} MB/s."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "speed.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
