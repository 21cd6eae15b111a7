#!/usr/bin/env python3
"""A/B study of model options: every variant starts from the same trained model, fine-tunes for
the same steps on the same data with the same recipe, and is scored on photographs that no
model here was trained on.

    python scripts/ab_study.py run baseline --out runs/ab --steps 2000 --threads 1
    python scripts/ab_study.py run staged --out runs/ab --steps 2000 --threads 1
    python scripts/ab_study.py report --out runs/ab --table data/benchmarks/ab_study.md

Options that change the flow itself (a permutation, a gain, a colour transform) cannot start
from the trained model; they are measured from scratch instead, against a baseline trained
from scratch with the same recipe (:data:`SCRATCH_VARIANTS`, the ``scratch`` command), NAME
each of scratch-baseline, scratch-reverse, scratch-rezero and scratch-ycocg in turn::

    python scripts/ab_study.py scratch NAME --out runs/ab-scratch --steps 5000 --threads 1
    python scripts/ab_study.py report --out runs/ab-scratch --table data/benchmarks/ab_scratch.md

A variant is a function from the starting model (float) to a model of the variant's
architecture that computes the same likelihood, or nearly (see :mod:`idfzip.growth`), so that
the study measures what the option adds, not how fast a new model relearns the old one.
Equal steps rather than equal seconds: runs share a busy machine, so their wall times are not
comparable; each run's seconds per step are reported beside its bpd. The score is
``-log2 p`` in total bits / total dims over the odd-indexed half of the Debian photographs
(``scripts/training_photos.py``), which every recipe here leaves out of training.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import torch  # noqa: E402

from idfzip.growth import grow_priors  # noqa: E402
from idfzip.model import FlowConfig, IntegerDiscreteFlow  # noqa: E402
from train_default import PHOTOS_MORE, debian_half  # noqa: E402

START = REPO / "data" / "checkpoints" / "photo-d384f497.pt"  # photo release d384f497's training

# name: function of the float starting model -> the variant's float model
VARIANTS = {
    "baseline": lambda model: model,
    # factored-out and top latents each coded in two channel groups, the second conditioned
    # on the first (channel-conditional priors)
    "staged": lambda model: grow_priors(model, replace(model.config, prior_stages=2,
                                                       top_stages=2)),
    # only the top latent in two channel groups, the second conditioned on the first
    "top2": lambda model: grow_priors(model, replace(model.config, top_stages=2)),
    # a mixture of three logistics per element of every factored-out latent
    "mixture": lambda model: grow_priors(model, replace(model.config, prior_components=3)),
}

# name: architecture trained from scratch, the layout of photo release d384f497 with the
# options of issue #13
PHOTO = FlowConfig(channels=3, levels=4, steps_per_level=4, hidden=64, depth=2, prior_hidden=64,
                   prior_depth=2)
SCRATCH_VARIANTS = {
    "scratch-baseline": PHOTO,
    "scratch-reverse": replace(PHOTO, permutation="reverse"),
    "scratch-rezero": replace(PHOTO, coupling_gain=True),
    "scratch-ycocg": replace(PHOTO, colour_transform="ycocg-r"),
}


def start_model() -> IntegerDiscreteFlow:
    """The float model of the ``photo`` release d384f497's training checkpoint."""
    from idfzip.train import model_of_checkpoint
    return model_of_checkpoint(START)


def unseen_photos() -> list:
    """The odd-indexed half (sorted names) of runs/photos_extra, whole images."""
    from idfzip.data import load_images
    files = sorted((REPO / "runs" / "photos_extra").glob("*.webp"))[1::2]
    if not files:
        raise SystemExit("runs/photos_extra is empty; build it with scripts/training_photos.py")
    return [im for f in files for im in load_images(f)]


def score(model: IntegerDiscreteFlow, images) -> tuple[float, dict[str, float]]:
    """-log2 p in bits per dimension (total bits / total dims), and its parts: what the top
    latent and each level's factored-out latent cost, in bits per image dimension."""
    model.eval()
    bits: dict[str, float] = {}
    dims = 0
    with torch.no_grad():
        for im in images:
            latents, conds = model.analyse(torch.from_numpy(im).unsqueeze(0))
            parts = {"top": model.top_prior.log_prob(latents[-1], None)}
            for level, (prior, z, y) in enumerate(zip(model.priors, latents, conds), 1):
                parts[f"level {level}"] = prior.log_prob(z, y)
            for name, log_p in parts.items():
                bits[name] = bits.get(name, 0.0) - float(log_p.double().sum()) / math.log(2)
            dims += im.size
    return sum(bits.values()) / dims, {name: b / dims for name, b in bits.items()}


def _train(args: argparse.Namespace, config, model_config, init_weights=None) -> None:
    """Train variant ``args.variant`` into ``args.out``/variant with ``config``, resumably,
    on the data every recipe here shares."""
    from idfzip.train import train
    if args.threads:
        torch.set_num_threads(args.threads)
    sources = [str(p) for p in [*PHOTOS_MORE, debian_half()]]
    out = Path(args.out) / args.variant
    train(model_config, sources, out, config, resume=True, progress=False,
          init_weights=init_weights, log=lambda msg: print(msg, flush=True))


def run(args: argparse.Namespace) -> None:
    from idfzip.train import TrainConfig
    config = TrainConfig(steps=args.steps, batch_size=16, crop=64, lr=args.lr, warmup_steps=100,
                         decay_per_1000=0.9, seed=1, holdout_fraction=0.02,
                         eval_every=args.steps, eval_crop=128, checkpoint_every=200,
                         precision="bfloat16")
    model = VARIANTS[args.variant](start_model())
    _train(args, config, model.config, model.state_dict())


def scratch(args: argparse.Namespace) -> None:
    """Train a :data:`SCRATCH_VARIANTS` architecture from its initialisation with the one
    from-scratch recipe (that of the shipped models' first phase: lr 3e-3, decay 0.97)."""
    from idfzip.train import TrainConfig
    config = TrainConfig(steps=args.steps, batch_size=16, crop=64, lr=3e-3, warmup_steps=300,
                         decay_per_1000=0.97, seed=0, holdout_fraction=0.02,
                         eval_every=args.steps, eval_crop=128, checkpoint_every=200,
                         precision="bfloat16")
    _train(args, config, SCRATCH_VARIANTS[args.variant])


def _scored_runs(out: Path, names, images) -> list[tuple]:
    """(name, steps, seconds per step, unseen bpd, its parts) of each of ``names`` trained
    into ``out``."""
    from idfzip.weights import load_model_file
    rows = []
    for name in names:
        ckpt = out / name / "checkpoint.pt"
        if not ckpt.exists():
            continue
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        bpd, parts = score(load_model_file(out / name / "model.pt"), images)
        per_step = state.get("trained_seconds", 0.0) / max(1, state["step"])
        rows.append((name, state["step"], per_step, bpd, parts))
    return rows


def _table(rows, reference: float | None) -> str:
    """Markdown table of :func:`_scored_runs` rows, each bpd's change against ``reference``."""
    levels = list(rows[0][4])
    lines = ["| variant | steps | s/step | unseen photos bpd | change | "
             + " | ".join(levels) + " |", "|---" * (5 + len(levels)) + "|"]
    for name, steps, per_step, bpd, parts in rows:
        change = "-" if reference is None or not steps else f"{bpd - reference:+.4f}"
        seconds = "-" if per_step is None else f"{per_step:.2f}"
        lines.append(f"| {name} | {steps} | {seconds} | {bpd:.4f} | {change} | "
                     + " | ".join(f"{parts[level]:.4f}" for level in levels) + " |")
    return "\n".join(lines) + "\n"


def report(args: argparse.Namespace) -> None:
    """Score each variant's last model on the unseen photos; markdown tables. Each variant is
    compared with its baseline: fine-tuned ones with ``baseline`` (the start fine-tuned alone),
    from-scratch ones with ``scratch-baseline``."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    images = unseen_photos()
    tables = []
    finetuned = _scored_runs(out, VARIANTS, images)
    if finetuned:
        start = ("start (photo d384f497, float)", 0, None, *score(start_model(), images))
        baseline = {row[0]: row[3] for row in finetuned}.get("baseline", start[3])
        tables.append(_table([start, *finetuned], baseline))
    from_scratch = _scored_runs(out, SCRATCH_VARIANTS, images)
    if from_scratch:
        baseline = {row[0]: row[3] for row in from_scratch}.get("scratch-baseline")
        tables.append(_table(from_scratch, baseline))
    text = "\n".join(tables)
    print(text)
    if args.table:
        Path(args.table).write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("run")
    q.add_argument("variant", choices=sorted(VARIANTS))
    q.add_argument("--out", required=True)
    q.add_argument("--steps", type=int, default=2000)
    q.add_argument("--lr", type=float, default=5e-4)
    q.add_argument("--threads", type=int, default=None)
    q = sub.add_parser("scratch")
    q.add_argument("variant", choices=sorted(SCRATCH_VARIANTS))
    q.add_argument("--out", required=True)
    q.add_argument("--steps", type=int, default=2000)
    q.add_argument("--threads", type=int, default=None)
    q = sub.add_parser("report")
    q.add_argument("--out", required=True)
    q.add_argument("--table", default=None)
    q.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    started = time.time()
    {"run": run, "scratch": scratch, "report": report}[args.command](args)
    print(f"{args.command} took {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
