#!/usr/bin/env python3
"""Scaling study of the photo flow: held-out bpd against training time for several widths and
depths, each trained from scratch on the same data with the same recipe.

    python scripts/scaling_study.py launch --out runs/study --data DIR ... --hours 0.4 --device cuda
    python scripts/scaling_study.py run w128 --out runs/study --data DIR ...   # one variant
    python scripts/scaling_study.py report --out runs/study --plot study.png --table study.md
    python scripts/scaling_study.py launch --base cifar10 --variants w64 --hours 0.3 \
        --threads 1 --out runs/study-cifar --data ../shared/data/cifar10 --crop 32   # on a CPU

``launch`` trains every variant at once (one process each; on one GPU they share it) and stops
them after ``--hours`` of wall time; every run resumes from its checkpoint, so a study can go
on over several sittings (``trained_seconds`` in each checkpoint adds the sittings up). On a
CPU, give every variant the same share of it: one at a time with ``--threads``, or all at once
with ``--threads 1`` pinned to the same cores (``taskset``), so that hours compare.
The learning rate scales as 1/sqrt(width / 64) from the 64-wide model's 3e-3. ``report``
fits each curve with a power law in training time and says what it predicts for 10x and
100x the time (see :func:`fit_power_law`).
"""

from __future__ import annotations

import argparse
import math
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from idfzip.model import FlowConfig  # noqa: E402
from idfzip.zoo import PRESETS  # noqa: E402

# name: (hidden width of every coupling and prior network, flow steps per level)
VARIANTS = {"w32": (32, 4), "w64": (64, 4), "w128": (128, 4), "w256": (256, 4),
            "w128s8": (128, 8), "w192": (192, 4), "w256s8": (256, 8)}
# layouts the variants are drawn on: photo-r1's (4 levels) and cifar10's (3 levels for 32x32)
BASES = ("photo-r1", "cifar10")


def variant_config(name: str, base: str = "photo-r1") -> FlowConfig:
    """Preset ``base`` (depth-2 networks) at the variant's width and flow steps per level."""
    width, steps = VARIANTS[name]
    return replace(PRESETS[base], steps_per_level=steps, hidden=width, prior_hidden=width)


def variant_lr(name: str, base: float) -> float:
    return base / math.sqrt(VARIANTS[name][0] / 64)


def run(args: argparse.Namespace) -> None:
    from idfzip.runtime import fastest_precision
    from idfzip.train import TrainConfig, train
    import torch
    torch.backends.cudnn.benchmark = True
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(steps=args.steps, batch_size=args.batch, crop=args.crop,
                         lr=variant_lr(args.variant, args.lr), warmup_steps=args.warmup,
                         decay_per_1000=args.decay, anneal_from=args.anneal_from,
                         anneal_decay_per_1000=args.anneal_decay, seed=0,
                         holdout_fraction=args.holdout, eval_every=args.eval_every,
                         eval_crop=128, checkpoint_every=args.eval_every,
                         precision=fastest_precision(args.device))
    init = None
    if args.init:  # fine-tune a trained model of the variant's architecture (a new run)
        from idfzip.zoo import load_model
        init = load_model(args.init).state_dict()
    train(variant_config(args.variant, args.base), args.data, Path(args.out) / args.variant, config,
          resume=True, device=args.device, progress=False, init_weights=init,
          log=lambda msg: print(msg, flush=True))


def launch(args: argparse.Namespace) -> None:
    """Every variant in its own process, all stopped after ``--hours`` (checkpoints survive)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for name in args.variants.split(","):
        cmd = [sys.executable, __file__, "run", name, *forwarded(args)]
        log = open(out / f"{name}.log", "a")
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.time() + args.hours * 3600
    while time.time() < deadline and any(p.poll() is None for p in procs):
        time.sleep(5)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait()


def forwarded(args: argparse.Namespace) -> list[str]:
    out = ["--out", args.out, "--device", args.device, "--steps", str(args.steps),
           "--batch", str(args.batch), "--crop", str(args.crop), "--lr", str(args.lr),
           "--warmup", str(args.warmup), "--decay", str(args.decay),
           "--anneal-decay", str(args.anneal_decay), "--holdout", str(args.holdout),
           "--eval-every", str(args.eval_every), "--base", args.base]
    if args.threads:
        out += ["--threads", str(args.threads)]
    if args.anneal_from is not None:
        out += ["--anneal-from", str(args.anneal_from)]
    for source in args.data:
        out += ["--data", source]
    return out


B_RANGE = (0.05, 3.0)  # exponents a fit may take; one at the lower end means "no floor seen"


def fit_power_law(hours: list[float], bpd: list[float]) -> tuple[float, float, float]:
    """``(floor, a, b)`` of ``bpd ~ floor + a * hours^-b`` (a > 0, b in ``B_RANGE``), least
    squares over the curve's last 90% of time (the first tenth is warm-up): b on a fine grid,
    floor and a linear in it. One run's curve under a decaying learning rate is not the
    envelope of many separately tuned runs, so predictions far beyond the data are rough, and
    the floor is this model's at this recipe, not the data's entropy. A curve still falling
    as fast as a logarithm gets b at the lower end of ``B_RANGE`` and a floor that means
    nothing: the report marks those."""
    t, y = np.asarray(hours, float), np.asarray(bpd, float)
    keep = t >= t.max() / 10
    t, y = t[keep], y[keep]
    if len(t) < 3:
        raise ValueError("a power-law fit needs at least 3 points past the first tenth")
    best = None
    for b in np.geomspace(*B_RANGE, 600):
        x = t ** -b
        design = np.stack([np.ones_like(x), x], 1)
        (floor, a), *_ = np.linalg.lstsq(design, y, rcond=None)
        if a <= 0:
            continue
        err = float(((design @ [floor, a] - y) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, float(floor), float(a), float(b))
    if best is None:
        raise ValueError("the curve does not fall: no power law with a > 0 fits it")
    return best[1:]


def predict(fit: tuple[float, float, float], hours: float) -> float:
    floor, a, b = fit
    return floor + a * hours ** -b


def report(args: argparse.Namespace) -> None:
    """Table (markdown) and figure of held-out bpd against training hours per variant, with a
    power-law fit of each curve and its predictions at 10x and 100x the hours."""
    import torch
    rows, curves, fits = [], {}, {}
    for ckpt in sorted(Path(args.out).glob("*/checkpoint.pt")):
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        name, hist = ckpt.parent.name, state["history"]
        if not hist:
            continue
        hours = [h["seconds"] / 3600 for h in hist]
        curves[name] = (hours, [h["eval_bpd"] for h in hist])
        best = min(h["eval_bpd"] for h in hist)
        params = sum(v.numel() for k, v in state["model"].items())
        total = state.get("trained_seconds", hist[-1]["seconds"]) / 3600
        try:
            fits[name] = fit_power_law(*curves[name])
            floor, _, b = fits[name]
            seen = f"{floor:.3f}" if b > B_RANGE[0] * 1.01 else "none seen"
            guess = (f"{seen} | {b:.2f} | {predict(fits[name], 10 * hours[-1]):.3f} | "
                     f"{predict(fits[name], 100 * hours[-1]):.3f}")
        except ValueError:
            guess = "- | - | - | -"
        rows.append(f"| {name} | {params / 1e6:.2f}M | {state['step']} | {total:.2f} | "
                    f"{hist[-1]['train_bpd']:.4f} | {hist[-1]['eval_bpd']:.4f} | {best:.4f} | "
                    f"{guess} |")
    table = ("| variant | parameters | steps | hours | train bpd | held-out bpd (last) | "
             "held-out bpd (best) | fit: floor | fit: b | fit at 10x hours | "
             "fit at 100x hours |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
             + "\n".join(rows) + "\n")
    if len(fits) > 1:  # which variant the fits favour at each budget (the same hours for all)
        budget = min(curves[name][0][-1] for name in fits)
        table += "\n" + "\n".join(
            f"- at {k * budget:.2f} h: "
            + ", ".join(f"{n} {predict(fits[n], k * budget):.3f}"
                        for n in sorted(fits, key=lambda n: predict(fits[n], k * budget)))
            for k in (1, 10, 100)) + "\n"
    print(table)
    if args.table:
        Path(args.table).write_text(table)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, (hours, bpd) in curves.items():
            line, = ax.plot(hours, bpd, label=name)
            if name in fits:
                ahead = np.geomspace(hours[-1], 100 * hours[-1], 50)
                ax.plot(ahead, [predict(fits[name], t) for t in ahead], "--",
                        color=line.get_color(), alpha=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("training hours (dashed: power-law fit, to 100x)")
        ax.set_ylabel("held-out bpd")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("run", "launch"):
        q = sub.add_parser(name)
        if name == "run":
            q.add_argument("variant", choices=sorted(VARIANTS))
            q.add_argument("--init", default=None, help="start from this trained model file")
        else:
            q.add_argument("--variants", default="w64,w128,w256,w128s8")
            q.add_argument("--hours", type=float, required=True, help="wall time of this sitting")
        q.add_argument("--out", required=True)
        q.add_argument("--data", action="append", required=True)
        q.add_argument("--device", default="cpu")
        q.add_argument("--steps", type=int, default=1_000_000)
        q.add_argument("--batch", type=int, default=32)
        q.add_argument("--crop", type=int, default=64)
        q.add_argument("--lr", type=float, default=3e-3, help="the 64-wide model's rate")
        q.add_argument("--warmup", type=int, default=500)
        q.add_argument("--decay", type=float, default=0.97, help="per 1000 steps")
        q.add_argument("--anneal-from", type=int, default=None)
        q.add_argument("--anneal-decay", type=float, default=0.85)
        q.add_argument("--holdout", type=float, default=0.05)
        q.add_argument("--eval-every", type=int, default=500)
        q.add_argument("--base", choices=BASES, default="photo-r1",
                       help="the preset whose layout the variants widen or deepen")
        q.add_argument("--threads", type=int, default=None, help="torch threads per variant")
    q = sub.add_parser("report")
    q.add_argument("--out", required=True)
    q.add_argument("--plot", default=None)
    q.add_argument("--table", default=None)
    args = p.parse_args()
    {"run": run, "launch": launch, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
