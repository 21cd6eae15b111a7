#!/usr/bin/env python3
"""Scaling study of the photo flow: held-out bpd against training time for several widths and
depths, each trained from scratch on the same data with the same recipe.

    python scripts/scaling_study.py launch --out runs/study --data DIR ... --hours 0.4 --device cuda
    python scripts/scaling_study.py run w128 --out runs/study --data DIR ...   # one variant
    python scripts/scaling_study.py report --out runs/study --plot study.png --table study.md

``launch`` trains every variant at once (one process each; on one GPU they share it) and stops
them after ``--hours`` of wall time; every run resumes from its checkpoint, so a study can go
on over several sittings (``trained_seconds`` in each checkpoint adds the sittings up).
The learning rate scales as 1/sqrt(width / 64) from the 64-wide model's 3e-3.
"""

from __future__ import annotations

import argparse
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from idfzip.model import FlowConfig  # noqa: E402

# name: (hidden width of every coupling and prior network, flow steps per level)
VARIANTS = {"w64": (64, 4), "w128": (128, 4), "w256": (256, 4), "w128s8": (128, 8),
            "w192": (192, 4), "w256s8": (256, 8)}


def variant_config(name: str) -> FlowConfig:
    """The ``photo`` layout (4 levels, depth-2 networks) at the variant's width and depth."""
    width, steps = VARIANTS[name]
    return FlowConfig(channels=3, levels=4, steps_per_level=steps, hidden=width, depth=2,
                      prior_hidden=width, prior_depth=2)


def variant_lr(name: str, base: float) -> float:
    return base / math.sqrt(VARIANTS[name][0] / 64)


def run(args: argparse.Namespace) -> None:
    from idfzip.train import TrainConfig, train
    import torch
    torch.backends.cudnn.benchmark = True
    config = TrainConfig(steps=args.steps, batch_size=args.batch, crop=args.crop,
                         lr=variant_lr(args.variant, args.lr), warmup_steps=args.warmup,
                         decay_per_1000=args.decay, anneal_from=args.anneal_from,
                         anneal_decay_per_1000=args.anneal_decay, seed=0,
                         holdout_fraction=args.holdout, eval_every=args.eval_every,
                         eval_crop=128, checkpoint_every=args.eval_every, precision="bfloat16")
    init = None
    if args.init:  # fine-tune a trained model of the variant's architecture (a new run)
        from idfzip.zoo import load_model
        init = load_model(args.init).state_dict()
    train(variant_config(args.variant), args.data, Path(args.out) / args.variant, config,
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
           "--eval-every", str(args.eval_every)]
    if args.anneal_from is not None:
        out += ["--anneal-from", str(args.anneal_from)]
    for source in args.data:
        out += ["--data", source]
    return out


def report(args: argparse.Namespace) -> None:
    """Table (markdown) and figure of held-out bpd against training hours per variant."""
    import torch
    rows, curves = [], {}
    for ckpt in sorted(Path(args.out).glob("*/checkpoint.pt")):
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        name, hist = ckpt.parent.name, state["history"]
        if not hist:
            continue
        curves[name] = hist
        best = min(h["eval_bpd"] for h in hist)
        params = sum(v.numel() for k, v in state["model"].items())
        rows.append(f"| {name} | {params / 1e6:.2f}M | {state['step']} | "
                    f"{state.get('trained_seconds', hist[-1]['seconds']) / 3600:.2f} | "
                    f"{hist[-1]['train_bpd']:.4f} | {hist[-1]['eval_bpd']:.4f} | {best:.4f} |")
    table = ("| variant | parameters | steps | hours | train bpd | held-out bpd (last) | "
             "held-out bpd (best) |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    print(table)
    if args.table:
        Path(args.table).write_text(table)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, hist in curves.items():
            ax.plot([h["seconds"] / 3600 for h in hist], [h["eval_bpd"] for h in hist],
                    label=name)
        ax.set_xlabel("training hours")
        ax.set_ylabel("held-out bpd")
        ax.grid(alpha=0.3)
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
    q = sub.add_parser("report")
    q.add_argument("--out", required=True)
    q.add_argument("--plot", default=None)
    q.add_argument("--table", default=None)
    args = p.parse_args()
    {"run": run, "launch": launch, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
