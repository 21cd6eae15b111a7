#!/usr/bin/env python3
"""Reproduce a shipped model: train it with the recorded recipe, then export it to the integer
form that goes into idfzip/weights/ (and whose sha256 is pinned in idfzip/zoo.py).

    python scripts/train_default.py photo            # resumable: run it again to continue
    python scripts/train_default.py photo-v2 --device cuda   # wide: trained on a GPU
    python scripts/train_default.py photo-w256-gpu --device cuda --minutes 9   # fit a budget
    python scripts/train_default.py photo --nproc 2 --threads 1   # data-parallel, 2 processes
    python scripts/train_default.py photo-deep       # grows photo's 50,000-step release

Training continues from data/checkpoints/MODEL.pt (model, optimiser and step of the latest
run, at or beyond the shipped weights) when runs/MODEL has no checkpoint yet, so every sitting
adds to the last one.

Each recipe names its data (from ../shared/data beside the repository), preset, steps, batch,
crop, learning-rate schedule and seed; the hardware and wall time of each shipped run are in the
README's table of shipped models.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

PHOTOS = [SHARED / "photos_train" / "crops.npz", SHARED / "photos_train" / "wikipedia_half"]
PHOTOS_MORE = [*PHOTOS, SHARED / "photos_train" / "urban100_half",
               SHARED / "photos_train" / "sun80_third"]
EARLIER_PHOTO = REPO / "idfzip" / "weights" / "photo-787b2fa4.pt"  # photo after 50,000 steps
PHOTO_E28D14B3 = REPO / "idfzip" / "weights" / "photo-e28d14b3.pt"  # the last 64-wide photo
# cifar10 release 20d5e707 (256 wide); cifar10-20d5e707.pt once a later release replaces it
CIFAR10_20D5E707 = REPO / "idfzip" / "weights" / "cifar10.pt"
PHOTO_2BF64504 = REPO / "idfzip" / "weights" / "photo-2bf64504.pt"  # 128 wide, one GPU
PHOTO = REPO / "idfzip" / "weights" / "photo.pt"  # the shipped photo (release c1aabb17)


@dataclass(frozen=True)
class FloatWeights:
    """The float weights of a shipped release, from its training checkpoint (kept in
    data/checkpoints), as a model file for ``--init`` (made on first use)."""
    release: str

    @property
    def checkpoint(self) -> Path:
        return REPO / "data" / "checkpoints" / f"{self.release}.pt"

    def __call__(self, args: argparse.Namespace | None = None) -> Path:
        from idfzip.train import model_of_checkpoint
        from idfzip.weights import save_model
        out = REPO / "runs" / f"{self.release}-float.pt"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            save_model(model_of_checkpoint(self.checkpoint), out)
        return out


# photo release d384f497: the start of release 24dff000, exactly as scripts/ab_study.py
# starts its variants
photo_d384f497 = FloatWeights("photo-d384f497")


def debian_half() -> Path:
    """The even-indexed half (sorted names) of the Debian photo set that
    scripts/training_photos.py builds in runs/photos_extra, linked into a folder of its own; the
    odd half stays unseen, to test on photographs that no model trained on."""
    extra = REPO / "runs" / "photos_extra"
    files = sorted(extra.glob("*.webp"))
    if not files:
        raise SystemExit(f"{extra}: empty; build it first with scripts/training_photos.py")
    out = REPO / "runs" / "photos_extra_train"
    out.mkdir(parents=True, exist_ok=True)
    for f in files[::2]:
        if not (out / f.name).exists():
            (out / f.name).symlink_to(f.resolve())
    return out


# every photo source: shared/data's and the Debian half
PHOTOS_ALL = [*PHOTOS_MORE, debian_half]


def recipe(preset: str, data: list[Path], batch: int, crop: int, eval_every: int,
           anneal_from: int, anneal_decay: float, steps: int, lr: float = 3e-3,
           warmup: int = 500, holdout: float = 0.02, init=None, decay: float = 0.97,
           seed: int = 0, arithmetic: str = "limb", ema: float = 0.0,
           calibration: int | None = None, grid: str | None = None) -> dict:
    """Data and ``idfzip train`` arguments of one shipped model: Adamax at ``lr`` with ``warmup``
    warm-up steps and ``decay`` per 1000 steps, then annealed from ``anneal_from`` (None:
    never). With ``init``, training starts from that model file (grown to ``preset`` if it has
    fewer flow steps, simpler priors or no colour transform). A data entry may be a function
    that makes the folder; ``init`` a model file, :class:`FloatWeights` or :class:`After`. With
    ``arithmetic="int8"`` it trains on the 8-bit export's grids (quantisation-aware) and is
    exported to that arithmetic, its scales calibrated on ``calibration`` crops (None: the
    default, 64). With ``grid`` (an 8-bit arithmetic other than ``arithmetic``), it trains on
    that arithmetic's grids and is exported to it, then converted (``idfzip export``: int8 to
    w8a8). With ``ema``, the run evaluates and exports its weights' moving average with that
    decay per step."""
    grid = grid or arithmetic
    return {"data": data, "steps": steps, "init": init, "arithmetic": arithmetic, "grid": grid,
            "args": ["--preset", preset, "--batch-size", str(batch), "--crop", str(crop),
                     "--eval-every", str(eval_every), "--lr", str(lr), "--warmup-steps",
                     str(warmup), "--decay-per-1000", str(decay),
                     *(["--anneal-from", str(anneal_from)] if anneal_from is not None else []),
                     "--anneal-decay-per-1000", str(anneal_decay),
                     "--holdout-fraction", str(holdout), "--seed", str(seed),
                     *(["--fake-quant", grid] if grid != "limb" else []),
                     *(["--ema", str(ema)] if ema else []),
                     *(["--calibration-crops", str(calibration)] if calibration else [])]}


def on_gpu(preset: str, data: list, batch: int, crop: int, lr: float, steps: int, init,
           nominal: tuple[int, int] = (10000, 6000), warmup: int = 300) -> dict:
    """A run on one GPU under ``idfzip train --minutes``: a ``nominal`` (steps, anneal from)
    schedule, decay 0.95 then 0.56 per 1000 steps, that the time budget stretched to the
    ``steps`` its pace allowed (TrainConfig.stretched_to; the refits round the anneal step,
    so a rerun may differ by a step there), written out here so that a rerun needs no
    budget."""
    from idfzip.train import TrainConfig
    fitted = TrainConfig(steps=nominal[0], anneal_from=nominal[1], decay_per_1000=0.95,
                         anneal_decay_per_1000=0.56).stretched_to(steps)
    return recipe(preset, data, batch, crop, 500, fitted.anneal_from,
                  fitted.anneal_decay_per_1000, steps, lr=lr, warmup=warmup,
                  decay=fitted.decay_per_1000, seed=2, init=init)


def on_8bit_grids(preset: str, data: list, batch: int, crop: int, steps: int, init,
                  ema: float = 0.0, calibration: int | None = None, lr: float = 2e-4,
                  arithmetic: str = "int8", grid: str = "int8") -> dict:
    """A trained model's weights calibrated (on ``calibration`` crops) and fine-tuned on the
    ``grid`` arithmetic's grids (issue #14): Adamax at ``lr``, 50 warm-up steps, decay 0.7 per
    1000, seed 3, float32; exported through a moving average of the weights with ``ema``, in
    ``arithmetic`` (w8a8 from an int8 grid: the int8 export converted to the finer grid)."""
    return recipe(preset, data, batch, crop, 500, None, 0.85, steps, lr=lr, warmup=50,
                  decay=0.7, seed=3, init=init, arithmetic=arithmetic, ema=ema,
                  calibration=calibration, grid=grid)


@dataclass(frozen=True)
class After:
    """The model that recipe ``stage`` ends with, as an ``init``: trains it first if
    runs/STAGE has not finished it (same device and threads, its own steps)."""
    stage: str

    def __call__(self, args: argparse.Namespace) -> Path:
        earlier = argparse.Namespace(**{**vars(args), "steps": None, "minutes": None,
                                        "out": None})
        return run(self.stage, earlier) / "model.pt"


RECIPES = {
    # One H100 for 18 min, shared with the 4 other runs of scripts/scaling_study.py (~10 steps/s)
    "photo-v2": recipe("photo-v2", PHOTOS_MORE, 128, 64, 500, 10000, 0.85, 11000, lr=1.5e-3,
                       holdout=0.05),
    # release d384f497 (see the README) with its top latent in two groups, fine-tuned further;
    # its first 6,000 steps are scripts/ab_study.py's variant top2
    "photo-24dff000": recipe("photo", PHOTOS_ALL, 16, 64, 2000, None, 0.85,
                             20000, lr=5e-4, warmup=100, decay=0.9, seed=1,
                             init=photo_d384f497),
    # release 24dff000 read through YCoCg-R (growth.recolour) and trained on
    "photo-affb10d8": recipe("photo-ycocg", PHOTOS_ALL, 16, 64, 2000, 19000,
                             0.7, 24000, lr=1e-3, warmup=200, decay=0.92, seed=2,
                             init=FloatWeights("photo-24dff000")),
    # release affb10d8 trained on from a restarted learning rate (same seed, so the same
    # held-out images), in bfloat16 on a CPU with AVX-512 BF16
    "photo-da9381cb": recipe("photo-ycocg", PHOTOS_ALL, 16, 64, 2000, 25000,
                             0.7, 32000, lr=5e-4, warmup=200, decay=0.95, seed=2,
                             init=FloatWeights("photo-affb10d8")),
    # release 24dff000 fine-tuned on the 8-bit export's grids (issue #14)
    "photo-int8-7a3f1952": on_8bit_grids("photo", PHOTOS_ALL, 16, 64, 6000,
                                         FloatWeights("photo-24dff000")),
    # release da9381cb widened to 128-wide networks (idfzip.growth.widen: the same function
    # at the start) and trained on in bfloat16, beside the 64-wide restart below for the same
    # wall time (one core each of a 2-core Xeon with AMX: 0.24 and 0.15 s per step); not
    # shipped (see the README's width study)
    "photo-w128": recipe("photo-w128", PHOTOS_ALL, 16, 64, 2000, 24000, 0.7,
                         30000, lr=5e-4, warmup=200, decay=0.95, seed=2,
                         init=FloatWeights("photo-da9381cb")),
    # release da9381cb trained on from a restarted learning rate whose curve in time is
    # photo-w128's (same seed, so the same held-out images and batches)
    "photo-e28d14b3": recipe("photo-ycocg", PHOTOS_ALL, 16, 64, 2000, 39000,
                             0.8, 49000, lr=5e-4, warmup=200, decay=0.969, seed=2,
                             init=FloatWeights("photo-da9381cb")),
    # the GPU width study (README): 8.8 minutes of one H200 for all of them at once; its
    # 128-wide run is photo release 2bf64504, the start of today's photo
    # (release e28d14b3 widened by growth.widen; 128 x 64² a step, four runs sharing an H200)
    "photo-2bf64504": on_gpu("photo-w128", PHOTOS_ALL, 128, 64, 1e-3, 5869, PHOTO_E28D14B3),
    "photo-w192-gpu": on_gpu("photo-w192", PHOTOS_ALL, 128, 64, 1e-3, 5501, PHOTO_E28D14B3),
    "photo-w256-gpu": on_gpu("photo-w256", PHOTOS_ALL, 128, 64, 1e-3, 5131, PHOTO_E28D14B3),
    # release affb10d8 fine-tuned on the 8-bit export's grids
    "photo-int8-2ea29f1d": on_8bit_grids("photo-ycocg", PHOTOS_ALL, 16, 64, 5000,
                                         FloatWeights("photo-affb10d8")),
    # the same from release e28d14b3, the last 64-wide photo
    "photo-int8-a7b51ba5": on_8bit_grids("photo-ycocg", PHOTOS_ALL, 16, 64, 5000,
                                         FloatWeights("photo-e28d14b3")),
    # the same from release 2bf64504, the 128-wide photo: 5,000 steps in 0.52 h, 2 threads,
    # on the 2-core AMD EPYC with AVX-512 BF16 (release bc27879a)
    "photo-int8-bc27879a": on_8bit_grids("photo-w128", PHOTOS_ALL, 16, 64, 5000,
                                         PHOTO_2BF64504),
    # ...the same batches, its weights' moving average exported (not shipped: README, --ema)
    "photo-int8-ema": on_8bit_grids("photo-w128", PHOTOS_ALL, 16, 64, 5000, PHOTO_2BF64504,
                                    ema=0.999),
    # ...and calibrated on 512 crops instead of 64: wider activation ranges, which photos
    # unlike the training crops need (0.56 h on the same machine; release c66fa8f5)
    "photo-int8-c66fa8f5": on_8bit_grids("photo-w128", PHOTOS_ALL, 16, 64, 5000,
                                         PHOTO_2BF64504, ema=0.999, calibration=512),
    # ...the same, converted to the w8a8 arithmetic's finer activations (release 25a55a0c)
    "photo-int8": on_8bit_grids("photo-w128", PHOTOS_ALL, 16, 64, 5000, PHOTO_2BF64504,
                                ema=0.999, calibration=512, arithmetic="w8a8"),
    # ...fine-tuned on the w8a8 grids instead
    "photo-int8-on-w8a8": on_8bit_grids("photo-w128", PHOTOS_ALL, 16, 64, 5000, PHOTO_2BF64504,
                                        ema=0.999, calibration=512, arithmetic="w8a8",
                                        grid="w8a8"),
    # ...calibrated on 2,048 crops (not shipped: worse on Kodak and unseen photos, README;
    # ~1 h, 1 then 2 threads, beside other work, resumed at step 2,200)
    "photo-int8-c2048": on_8bit_grids("photo-w128", PHOTOS_ALL, 16, 64, 5000, PHOTO_2BF64504,
                                      ema=0.999, calibration=2048),
    # ...the same at half the learning rate (not shipped: worse on Kodak and unseen photos,
    # README; 1.19 h at 1 thread beside other work)
    "photo-int8-lr1e-4": on_8bit_grids("photo-w128", PHOTOS_ALL, 16, 64, 5000, PHOTO_2BF64504,
                                       ema=0.999, calibration=512, lr=1e-4),
    # release 2bf64504 trained on as photo-int8-c66fa8f5 was, without the 8-bit grids: its
    # weights' moving average exported (limb); 0.61 h, 1 thread, bfloat16, on the 2-core AMD
    # EPYC with AVX-512 BF16 (release c1aabb17)
    "photo": on_8bit_grids("photo-w128", PHOTOS_ALL, 16, 64, 5000, PHOTO_2BF64504,
                           ema=0.999, arithmetic="limb", grid="limb"),
    # photo-int8's recipe from release c1aabb17 (the photo it was made from, trained on); not
    # shipped: Kodak 3.2520, unseen photos 2.8871 against 25a55a0c's 3.2535 / 2.8802 (0.77 h,
    # 1 thread, on the 2-core AMD EPYC with AVX-512 BF16, beside another run)
    "photo-int8-from-c1aabb17": on_8bit_grids("photo-w128", PHOTOS_ALL, 16, 64, 5000, PHOTO,
                                              ema=0.999, calibration=512, arithmetic="w8a8"),
    "photo-deep": recipe("photo-deep", PHOTOS, 16, 64, 500, 6000, 0.85, 16000, lr=5e-4,
                         warmup=200, init=EARLIER_PHOTO),
    "photo-grey": recipe("photo-grey", PHOTOS, 16, 64, 500, 7800, 0.8, 16000),
    # release ab2c6ac5 (from scratch), the start of release fca2c150
    "cifar10-ab2c6ac5": recipe("cifar10", [SHARED / "cifar10"], 32, 32, 1000, 7200, 0.9, 35000),
    # release ab2c6ac5 read through YCoCg-R (idfzip.growth.recolour) and trained on
    "cifar10-fca2c150": recipe("cifar10-ycocg", [SHARED / "cifar10"], 32, 32, 2000, 10000, 0.7,
                               14000, lr=1e-3, warmup=200, decay=0.88, seed=2,
                               init=FloatWeights("cifar10-ab2c6ac5")),
    # release fca2c150 trained on from a restarted learning rate (same seed and held-out
    # images), in bfloat16 on a CPU with AVX-512 BF16
    "cifar10-1e2c6801": recipe("cifar10-ycocg", [SHARED / "cifar10"], 32, 32, 2000, 50000, 0.7,
                               60000, lr=4e-4, warmup=200, decay=0.97, seed=2,
                               init=FloatWeights("cifar10-fca2c150")),
    # release 1e2c6801 trained on from a restarted learning rate (same seed and held-out
    # images), in bfloat16 on a CPU with AMX, under a time budget (idfzip train --minutes:
    # 75, then 48 after a restart at step 5,000, the schedule refitted to the pace every 500
    # steps); its last fitted schedule, written out
    "cifar10-43a6de5f": recipe("cifar10-ycocg", [SHARED / "cifar10"], 32, 32, 2000, 32968,
                               0.614585998485019, 43961, lr=3e-4, warmup=200,
                               decay=0.9592801390496585, seed=2,
                               init=FloatWeights("cifar10-1e2c6801")),
    # release 43a6de5f widened to 256 (growth.widen) and trained on one H200, 256 x 32² a
    # step, beside three other widths / rates (README: CIFAR-10 width study), 8.6 minutes...
    "cifar10-w256-gpu": on_gpu("cifar10-w256", [SHARED / "cifar10"], 256, 32, 2e-3, 8850,
                               FloatWeights("cifar10-43a6de5f")),
    # ...then 3.4 more minutes from a restarted learning rate, beside a run at 1e-3
    "cifar10": on_gpu("cifar10-w256", [SHARED / "cifar10"], 256, 32, 2e-3, 4551,
                      After("cifar10-w256-gpu"), nominal=(6000, 2500), warmup=100),
    # release ab2c6ac5 fine-tuned on the 8-bit export's grids (issue #14)
    "cifar10-int8-67434443": on_8bit_grids("cifar10", [SHARED / "cifar10"], 32, 32, 6000,
                                           FloatWeights("cifar10-ab2c6ac5")),
    # release fca2c150 fine-tuned on the 8-bit export's grids
    "cifar10-int8-e812eb3f": on_8bit_grids("cifar10-ycocg", [SHARED / "cifar10"], 32, 32, 6000,
                                           FloatWeights("cifar10-fca2c150")),
    # the same from release 43a6de5f, the last 64-wide cifar10
    "cifar10-int8-b674815d": on_8bit_grids("cifar10-ycocg", [SHARED / "cifar10"], 32, 32, 6000,
                                           FloatWeights("cifar10-43a6de5f")),
    # the same from release 20d5e707, 256 wide: 6,000 steps in 0.69 h, 2 threads, on the
    # 2-core AMD EPYC with AVX-512 BF16 (release 127860ab)
    "cifar10-int8-127860ab": on_8bit_grids("cifar10-w256", [SHARED / "cifar10"], 32, 32, 6000,
                                           CIFAR10_20D5E707),
    # ...calibrated on 512 crops and exported through its weights' moving average, as
    # photo-int8: 0.78 h on the same machine (release 9ba6f4c7)
    "cifar10-int8-9ba6f4c7": on_8bit_grids("cifar10-w256", [SHARED / "cifar10"], 32, 32, 6000,
                                           CIFAR10_20D5E707, ema=0.999, calibration=512),
    # ...the same, converted to the w8a8 arithmetic's finer activations (release e9d34876)
    "cifar10-int8": on_8bit_grids("cifar10-w256", [SHARED / "cifar10"], 32, 32, 6000,
                                  CIFAR10_20D5E707, ema=0.999, calibration=512,
                                  arithmetic="w8a8"),
    # cifar10-int8's fine-tune without the 8-bit grids (limb), as photo release c1aabb17; not
    # shipped: CIFAR-10 test 3.7611 against 20d5e707's 3.7609 (0.58 h, 1 thread, bfloat16,
    # on the 2-core AMD EPYC with AVX-512 BF16, beside another run)
    "cifar10-ema": on_8bit_grids("cifar10-w256", [SHARED / "cifar10"], 32, 32, 6000,
                                 CIFAR10_20D5E707, ema=0.999, arithmetic="limb", grid="limb"),
}


def run(name: str, args: argparse.Namespace) -> Path:
    """Train recipe ``name`` to its last step (or ``--steps``) in its run folder, continuing
    from there or from ``data/checkpoints``; returns the folder."""
    recipe = RECIPES[name]
    out = Path(args.out) if args.out else REPO / "runs" / name
    shipped = REPO / "data" / "checkpoints" / f"{name}.pt"
    if not (out / "checkpoint.pt").exists() and shipped.exists():
        out.mkdir(parents=True, exist_ok=True)  # continue where the shipped model stopped
        shutil.copyfile(shipped, out / "checkpoint.pt")
    launcher = [sys.executable]
    if args.nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone",
                     f"--nproc_per_node={args.nproc}"]
    steps = args.steps or recipe["steps"]
    cmd = [*launcher, "-m", "idfzip", "train", "--out", str(out), "--resume",
           "--device", args.device, "--steps", str(steps), *recipe["args"]]
    for source in recipe["data"]:
        cmd += ["--data", str(source() if callable(source) else source)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.precision:
        cmd += ["--precision", args.precision]
    if args.minutes:
        cmd += ["--minutes", str(args.minutes)]
    init = recipe["init"]
    if init and not (out / "checkpoint.pt").exists():
        cmd += ["--init", str(init(args) if callable(init) else init)]
    subprocess.run(cmd, check=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", choices=sorted(RECIPES))
    p.add_argument("--steps", type=int, default=None, help="stop (or pause) after this step")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--precision", choices=["float32", "bfloat16"], default=None,
                   help="of the networks' hidden layers (default: bfloat16 where the hardware "
                        "has bfloat16 units, else float32)")
    p.add_argument("--minutes", type=float, default=None,
                   help="time budget of this sitting: the recipe's schedule is fitted to it "
                        "once the pace is known (idfzip train --minutes)")
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes on this machine (torchrun); same results")
    p.add_argument("--out", default=None, help="run folder (default runs/MODEL)")
    p.add_argument("--export-only", action="store_true", help="only export the last model.pt")
    args = p.parse_args()
    out = Path(args.out or REPO / "runs" / args.model)
    if not args.export_only:
        out = run(args.model, args)
    target = REPO / "idfzip" / "weights" / f"{args.model}.pt"
    recipe = RECIPES[args.model]
    exported = target if recipe["grid"] == recipe["arithmetic"] else out / "export.pt"
    subprocess.run([sys.executable, "-m", "idfzip", "export", str(out / "model.pt"), "-o",
                    str(exported), "-f", "--arithmetic", recipe["grid"]], check=True)
    if exported != target:  # trained on another 8-bit grid: converted (int8 -> w8a8)
        subprocess.run([sys.executable, "-m", "idfzip", "export", str(exported), "-o",
                        str(target), "-f", "--arithmetic", recipe["arithmetic"]], check=True)
    print(f"now pin the printed sha256 for {args.model!r} in idfzip/zoo.py (SHIPPED)")


if __name__ == "__main__":
    main()
