"""Training loop: Adamax with linear warm-up and exponential decay, optional weight
averaging, periodic held-out evaluation, and checkpoints from which ``resume=True`` continues
bit for bit.

Exact resumption rests on three facts: the batch of step ``s`` is a pure function of
``(seed, s)`` (see :class:`idfzip.data.CropSampler`), the learning rate is a pure function of
``s``, and the checkpoint holds the model, optimiser and averaged-weight state of step ``s``.

With ``ema`` set, the weights that are evaluated and exported are an exponential moving
average of the trained ones (Polyak averaging, as Glow and most flow models use for
evaluation): a small batch leaves the last iterate noisy, and the average sits where it wanders.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from . import distributed
from .allocator import reuse_freed_memory
from .calibration import fill_activation_range
from .data import CropSampler, DataError, center_crops, load_images, split_holdout
from .int8net import ACTIVATION_TOPS
from .model import FlowConfig, IntegerDiscreteFlow
from .nets import ConvNet, set_precision
from .weights import atomic_save, save_model

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20000
    batch_size: int = 32
    crop: int = 32
    lr: float = 3e-3
    warmup_steps: int = 500
    decay_per_1000: float = 0.97
    anneal_from: int | None = None  # from this step on, decay at anneal_decay_per_1000
    anneal_decay_per_1000: float = 0.85
    seed: int = 0
    holdout_fraction: float = 0.02
    eval_every: int = 1000
    eval_crop: int = 128
    eval_max_images: int = 500
    checkpoint_every: int = 200
    fake_quant: str = ""  # quantisation-aware on an export's grids: "" or an arithmetic
    calibration_crops: int = 64  # training crops that set the 8-bit activation scales
    precision: str = "float32"  # a key of nets.PRECISIONS: hidden layers' dtype (see ConvNet)
    ema: float = 0.0  # decay per step of the averaged weights evaluated and exported (0: off)

    def lr_at(self, step: int) -> float:
        """A pure function of ``step`` (exact resumption). The optional anneal phase lets a
        run that has plateaued at the slow decay be finished with a faster one, continuously:
        it changes the rate of decay at ``anneal_from``, not the learning rate itself."""
        warm = min(1.0, (step + 1) / max(1, self.warmup_steps))
        slow, fast = step, 0
        if self.anneal_from is not None and step > self.anneal_from:
            slow, fast = self.anneal_from, step - self.anneal_from
        return (self.lr * warm * self.decay_per_1000 ** (slow / 1000.0)
                * self.anneal_decay_per_1000 ** (fast / 1000.0))

    def stretched_to(self, steps: int) -> "TrainConfig":
        """The same schedule over ``steps`` steps instead: the anneal starts at the same share
        of the run and both decays reach the same factor by its end (warm-up unchanged)."""
        k = steps / self.steps
        anneal_from = None if self.anneal_from is None else round(self.anneal_from * k)
        return replace(self, steps=steps, anneal_from=anneal_from,
                       decay_per_1000=self.decay_per_1000 ** (1 / k),
                       anneal_decay_per_1000=self.anneal_decay_per_1000 ** (1 / k))


# A time budget measures the pace from step 20 of a sitting to step 120, fits the schedule to
# it, then measures and fits again every 500 steps, so a machine that gets busier or quieter
# moves the end with it (a refit moves the learning rate of the current step a little).
TIMING_STEPS = (20, 120)
REFIT_EVERY = 500


def evaluate(model: IntegerDiscreteFlow, images: list[np.ndarray], batch_size: int = 64) -> float:
    """Bits per dimension over ``images``: total bits / total dims (sizes may differ)."""
    was_training = model.training
    model.eval()
    bits, dims = 0.0, 0
    by_shape: dict[tuple, list[np.ndarray]] = {}
    for im in images:
        by_shape.setdefault(im.shape, []).append(im)
    for group in by_shape.values():
        for i in range(0, len(group), batch_size):
            x = torch.from_numpy(np.stack(group[i: i + batch_size]))
            bits += float(-model.log_prob(x).sum())
            dims += x.numel()
    model.train(was_training)
    return bits / dims


CHECKPOINT_KEYS = {"model": dict, "optimizer": dict, "step": int, "history": list,
                   "model_config": dict, "train_config": dict}


def read_checkpoint(path: Path, device) -> dict:
    """The state saved by a training run, or a DataError naming the file: a damaged file, an
    exported model.pt or any other file in its place is one line, not a traceback."""
    fix = "; move it away to start afresh, or train without --resume"
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # truncated, not a torch file, unsafe pickle, ...
        raise DataError(f"{path}: not a readable training checkpoint "
                        f"({type(err).__name__}){fix}") from None
    if not isinstance(state, dict) or any(not isinstance(state.get(key), kind)
                                          for key, kind in CHECKPOINT_KEYS.items()):
        raise DataError(f"{path}: not a training checkpoint of idfzip{fix}")
    return state


def model_of_checkpoint(path: str | Path) -> IntegerDiscreteFlow:
    """The float model a training checkpoint holds at its step: the averaged weights where
    the run averages them (what its model.pt holds), else the trained ones."""
    state = read_checkpoint(Path(path), "cpu")
    config = _config_of(state)
    if config is None:
        raise DataError(f"{path}: its model configuration is not one this version can build")
    model = IntegerDiscreteFlow(config)
    averaged = state.get("averaged")
    if averaged is None:
        model.load_state_dict(state["model"])
    else:
        model.load_state_dict({k.removeprefix("module."): v for k, v in averaged.items()
                               if k.startswith("module.")})
    return model


def averager(model: IntegerDiscreteFlow, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``model``'s parameters (a copy that
    ``update_parameters(model)`` moves by ``1 - decay`` towards them; the first update copies
    them), or None for ``decay == 0``. Buffers (the permutations) never change in training."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))


def _config_of(state: dict) -> FlowConfig | None:
    """The model configuration a checkpoint was made for (options added since then take their
    defaults, which keep old configurations meaning what they meant); None if unreadable."""
    try:
        return FlowConfig(**state["model_config"])
    except (TypeError, ValueError):
        return None


def train(model_config: FlowConfig, sources: list[str], out_dir: str | Path,
          config: TrainConfig = TrainConfig(), resume: bool = False, device: str = "cpu",
          progress: bool = True, log=print, init_weights: dict | None = None,
          time_budget: float | None = None) -> IntegerDiscreteFlow:
    """Train a flow on ``sources`` (see :func:`idfzip.data.load_images`), writing
    ``checkpoint.pt`` and the exportable ``model.pt`` into ``out_dir``. Under ``torchrun``
    the processes train data-parallel (see :mod:`idfzip.distributed`).

    With ``time_budget`` (seconds of this sitting), the schedule is stretched or shrunk
    whenever the pace is measured (:data:`TIMING_STEPS`, :data:`REFIT_EVERY`) so that it
    ends, annealed, inside the budget, and the run stops at the budget in any case: for a
    machine lent for a fixed time, where steps per second are not known in advance. The
    fitted schedule is logged and kept in the checkpoint's ``train_config``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if device == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda was asked for, but no CUDA device is available")
    replica = distributed.start(device, config.batch_size)
    if time_budget is not None and replica.distributed:
        raise DataError("a time budget is for one process: each replica would fit its own "
                        "schedule; give --steps instead")
    deadline = None if time_budget is None else time.time() + time_budget
    reuse_freed_memory()
    device = replica.device
    if not replica.main:
        progress, log = False, lambda msg: None

    images = [im for src in sources for im in load_images(src, model_config.channels)]
    train_images, eval_images = split_holdout(images, config.holdout_fraction, config.seed)
    eval_images = center_crops(eval_images[: config.eval_max_images], config.eval_crop)
    sampler = CropSampler(train_images, config.crop, config.seed)
    log(f"data: {len(train_images)} training images, {len(eval_images)} held out")
    if replica.distributed:
        log(f"data-parallel: {replica.world} processes, {config.batch_size // replica.world} "
            f"images each per step")

    torch.manual_seed(config.seed)
    # channels-last weights: oneDNN's fastest convolutions on CPU (1.1-1.4x per step in float32,
    # and needed for bfloat16's gain); the values, the hash and the exported model are unchanged
    model = IntegerDiscreteFlow(model_config).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adamax(model.parameters(), lr=config.lr)
    step, history, trained_seconds = 0, [], 0.0  # seconds: summed over resumed runs
    saved_average = None
    ckpt_path = out_dir / CHECKPOINT_NAME
    if resume and ckpt_path.exists():
        state = read_checkpoint(ckpt_path, device)
        if _config_of(state) != model_config:
            raise DataError(f"{ckpt_path}: checkpoint was made for another model configuration")
        if state["train_config"] != asdict(config):
            log("note: training settings differ from the checkpoint's; the run continues "
                "with the new ones")
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"{ckpt_path}: checkpoint does not fit the model "
                            f"({str(err).splitlines()[0]})") from None
        step, history = state["step"], state["history"]
        trained_seconds = state.get("trained_seconds", 0.0)
        log(f"resumed from {ckpt_path} at step {step}")
        saved_average = state.get("averaged")
    elif init_weights is not None:
        model.load_state_dict(init_weights)
        if config.fake_quant in ACTIVATION_TOPS:  # fill the 8-bit grid before training on it
            crops = sampler.batch(0, config.calibration_crops)
            fill_activation_range(model, torch.from_numpy(crops).to(device).float())
            log(f"8-bit grids: hidden activations rescaled on {config.calibration_crops} crops")
    for module in model.modules():
        if isinstance(module, ConvNet):
            module.fake_quant = config.fake_quant
    set_precision(model, config.precision)
    averaged = averager(model, config.ema)  # a copy: after the settings above, to share them
    if averaged is not None and saved_average is not None:
        try:
            averaged.load_state_dict(saved_average)
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"{ckpt_path}: its averaged weights do not fit the model "
                            f"({str(err).splitlines()[0]})") from None
    elif averaged is not None:
        if step:
            log("note: the checkpoint has no averaged weights; averaging starts here")
        averaged.update_parameters(model)  # the average starts at the current weights
    # the weights that are evaluated and exported
    result = model if averaged is None else averaged.module

    def checkpoint():
        distributed.check_replicas(model, replica)
        if not replica.main:
            return
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "step": step, "history": history, "model_config": model_config.to_dict(),
                 "trained_seconds": trained_seconds + time.time() - started,
                 "train_config": asdict(config)}
        if averaged is not None:
            state["averaged"] = averaged.state_dict()
        atomic_save(state, ckpt_path)
        save_model(result, out_dir / MODEL_NAME)

    net = distributed.wrap(model, replica)
    model.train()
    bar = tqdm(total=config.steps, initial=step, disable=not progress, unit="step",
               dynamic_ncols=True)
    running = None
    started, first_step = time.time(), step
    timing = None  # (time, step) from which the pace is being measured
    while step < config.steps:
        if deadline is not None:
            sat = step - first_step
            if sat == TIMING_STEPS[0]:
                timing = (time.time(), step)
            elif timing is not None and (sat == TIMING_STEPS[1]
                                         or step - timing[1] == REFIT_EVERY):
                now = time.time()
                pace = (step - timing[1]) / max(now - timing[0], 1e-9)
                last = step + int(0.97 * pace * (deadline - now))
                if sat == TIMING_STEPS[1] or abs(last - config.steps) > 0.02 * config.steps:
                    log(f"time budget: {pace:.2f} steps/s, so the schedule ends at step "
                        f"{max(step + 1, last)}")
                config = config.stretched_to(max(step + 1, last))
                bar.total = config.steps
                timing = (now, step)
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        x = replica.shard(sampler.batch(step, config.batch_size))
        loss = net(torch.from_numpy(x).to(device).float()).mean()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if averaged is not None:
            averaged.update_parameters(model)
        step += 1
        if deadline is not None and step < config.steps and time.time() > deadline:
            log(f"time budget spent at step {step}; stopping there")
            config = replace(config, steps=step)  # so this step is evaluated and saved
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(bpd=f"{running:.3f}", lr=f"{config.lr_at(step):.2e}")
        if replica.main and (step % config.eval_every == 0 or step == config.steps):
            held_out = evaluate(result, eval_images)
            history.append({"step": step, "train_bpd": running, "eval_bpd": held_out,
                            "seconds": trained_seconds + time.time() - started})
            (bar.write if progress else log)(
                f"step {step}: train {running:.4f} bpd, held-out {held_out:.4f} bpd "
                f"({history[-1]['seconds'] / 3600:.3f} h)")
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoint()
    bar.close()
    if step == first_step:  # resumed at or past the last step: still leave model.pt behind
        checkpoint()
    if replica.distributed:
        distributed.check_replicas(model, replica)
        log(f"data-parallel: replicas identical at step {step}")
    distributed.stop(replica)
    result.eval()
    return result

