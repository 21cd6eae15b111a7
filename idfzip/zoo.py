"""Named model presets and the weights shipped with the package.

A preset is an architecture (:class:`FlowConfig`); a shipped model is a preset plus a weight
file in ``idfzip/weights/`` whose sha256 is pinned here. Models are looked up here by name or
path, and loaded once per process (:func:`coding_model`). A file records its model's name and
the first bytes of that sha256; when retraining replaces a shipped model's weights, the old
ones stay in ``EARLIER``, so files made by an earlier release still decode.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .codec import FlowCodec
from .intnet import to_integer
from .model import FlowConfig, IntegerDiscreteFlow
from .weights import ModelError, load_model_file, weights_sha256

PHOTO_YCOCG = FlowConfig(channels=3, levels=4, steps_per_level=4, hidden=64, depth=2,
                         prior_hidden=64, prior_depth=2, top_stages=2,
                         colour_transform="ycocg-r")

CIFAR10_YCOCG = FlowConfig(channels=3, levels=3, steps_per_level=4, hidden=64, depth=2,
                           prior_hidden=64, prior_depth=2, colour_transform="ycocg-r")


def at_width(config: FlowConfig, width: int) -> FlowConfig:
    """``config`` with every coupling and prior network ``width`` wide."""
    return replace(config, hidden=width, prior_hidden=width)


PRESETS: dict[str, FlowConfig] = {
    # Photos of any size: four levels, so the top latent is 1/16 of the dims; it is coded in
    # two channel groups, the second conditioned on the first (see scripts/ab_study.py). The
    # layout of photo's release 24dff000 and of photo-int8; the shipped photo has it behind
    # a colour transform (photo-ycocg).
    "photo": FlowConfig(channels=3, levels=4, steps_per_level=4, hidden=64, depth=2,
                        prior_hidden=64, prior_depth=2, top_stages=2),
    # photo's layout up to release d384f497: the top latent in one group, unconditioned.
    "photo-r1": FlowConfig(channels=3, levels=4, steps_per_level=4, hidden=64, depth=2,
                           prior_hidden=64, prior_depth=2),
    # photo-r1 with twice the flow steps, grown from photo's release 787b2fa4.
    "photo-deep": FlowConfig(channels=3, levels=4, steps_per_level=8, hidden=64, depth=2,
                             prior_hidden=64, prior_depth=2),
    # Four times photo-r1's width (256-wide networks, 3.6M parameters): the scaling study's
    # widest; not shipped (no smaller than photo on unseen photos, at 1/4 of its speed).
    "photo-v2": FlowConfig(channels=3, levels=4, steps_per_level=4, hidden=256, depth=2,
                           prior_hidden=256, prior_depth=2),
    # photo's layout behind a YCoCg-R colour transform (the from-scratch A/B's clear winner,
    # scripts/ab_study.py): the shipped photo from release affb10d8 (release 24dff000
    # recoloured, idfzip.growth.recolour, and trained on) to release e28d14b3.
    "photo-ycocg": PHOTO_YCOCG,
    # photo-ycocg at 128 / 192 / 256 wide, grown from a trained photo by idfzip.growth.widen,
    # which keeps what it computes. On a GPU a step of these small networks costs about the
    # same at any of these widths; on CPUs with AMX a bfloat16 step of photo-w128 costs 1.4x
    # photo-ycocg's for 2.2x the parameters (see the README's width studies).
    "photo-w128": at_width(PHOTO_YCOCG, 128),
    "photo-w192": at_width(PHOTO_YCOCG, 192),
    "photo-w256": at_width(PHOTO_YCOCG, 256),
    # Grey photos (mode L): photo-r1's architecture on one channel.
    "photo-grey": FlowConfig(channels=1, levels=4, steps_per_level=4, hidden=64, depth=2,
                             prior_hidden=64, prior_depth=2),
    # The literature's CIFAR-10 benchmark (32x32 images).
    "cifar10": FlowConfig(channels=3, levels=3, steps_per_level=4, hidden=64, depth=2,
                          prior_hidden=64, prior_depth=2),
    # cifar10's layout behind a YCoCg-R colour transform: the shipped cifar10 since release
    # fca2c150 (release ab2c6ac5 recoloured, idfzip.growth.recolour, and trained on).
    "cifar10-ycocg": CIFAR10_YCOCG,
    # cifar10-ycocg at 128 / 192 / 256 wide, grown from a trained cifar10 by growth.widen
    "cifar10-w128": at_width(CIFAR10_YCOCG, 128),
    "cifar10-w192": at_width(CIFAR10_YCOCG, 192),
    "cifar10-w256": at_width(CIFAR10_YCOCG, 256),
}

WEIGHTS = resources.files("idfzip") / "weights"
DEFAULT_MODEL = "photo"
DEFAULT_MODELS = {3: "photo", 1: "photo-grey"}  # by channel count: colour and grey images


@dataclass(frozen=True)
class ShippedModel:
    preset: str
    filename: str
    sha256: str
    arithmetic: str = "limb"  # of its integer networks (see idfzip.intnet, idfzip.int8net)


SHIPPED: dict[str, ShippedModel] = {
    # Reproduce with scripts/train_default.py; recipes, hardware and wall time in the README.
    "photo-deep": ShippedModel(  # files ~0.2% smaller than photo's, at 0.6x its speed
        "photo-deep", "photo-deep.pt",
        "d1f858ff262c79d8621b3c5be76cf2f511944a84474c1f766875a84aa8fe57e1"),
    "photo": ShippedModel(  # release 2bf64504 trained on, its weights' moving average
        "photo-w128", "photo.pt",
        "c1aabb17e1af1864ca3c2962f90cf72babeda9c630f802a0581d6d34794c2a0b"),
    "photo-int8": ShippedModel(  # photo release 2bf64504 in 8-bit arithmetic: 2.6x its speed
        "photo-w128", "photo-int8.pt",  # (release c66fa8f5 on w8a8's finer activation grid)
        "25a55a0cfe69510b1ba8505a088dcc75ce5c1462328685e623374d24b91275f9", "w8a8"),
    "photo-grey": ShippedModel(
        "photo-grey", "photo-grey.pt",
        "ce3cf21de37d2a009c287a84752036a5c483627fc47bd2764ca3ee5dc6d995f8"),
    "cifar10": ShippedModel(  # release 43a6de5f widened to 256 and trained on one GPU
        "cifar10-w256", "cifar10.pt",
        "20d5e707adc7347b36124ed25383eae88eb49f4814d4e0fa50f2d8d65da7ad0e"),
    "cifar10-int8": ShippedModel(  # cifar10 release 20d5e707 in 8-bit arithmetic: -0.001
        "cifar10-w256", "cifar10-int8.pt",  # (release 9ba6f4c7 on w8a8's finer grid)
        "e9d34876adb839d1daf1089dcb8be7bad49385b3a60aec1b85afab76a9f9e259", "w8a8"),
}


# Weights that ``SHIPPED`` had in earlier releases; decoding picks them by the id in a file.
EARLIER: dict[str, tuple[ShippedModel, ...]] = {
    "photo": (ShippedModel("photo-w128", "photo-2bf64504.pt",  # e28d14b3 widened, one GPU
                           "2bf64504ee2dfd11089034129a4fed0903754f697a5a20c0ff3f2843ddee6ef3"),
              ShippedModel("photo-ycocg", "photo-e28d14b3.pt",
                           "e28d14b3120e741c90e315b4d08d2622162c34e399f4d2d20e4de9e3c3f7048c"),
              ShippedModel("photo-ycocg", "photo-da9381cb.pt",
                           "da9381cbc40b14518f64f1af8d0628ab2d1be4a6f4799711680acc720ec3872a"),
              ShippedModel("photo-ycocg", "photo-affb10d8.pt",
                           "affb10d8f8d23924b8f94804144cec3bdea01ef4c9291da65c150c54c1af63bb"),
              ShippedModel("photo", "photo-24dff000.pt",
                           "24dff000f44c4f73d63492b5c6d6bfc9d48b8d3460cd62f6e78d0cd0c76bd6c8"),
              ShippedModel("photo-r1", "photo-d384f497.pt",
                           "d384f497df78e09a0039f3211b3a75fb076a3085502fd7e15d79037084c59e03"),
              ShippedModel("photo-r1", "photo-787b2fa4.pt",
                           "787b2fa4ee1c7de5c15287901fcbfb0a97ba0a7a7fe12e523927401d694d5c11"),
              ShippedModel("photo-r1", "photo-cb8726df.pt",
                           "cb8726df11a26a072102bf56d7373e408bed5824ef02209672baec41003fafbb"),),
    "photo-int8": (
        ShippedModel(  # the same weights in the int8 arithmetic (7-bit activations)
            "photo-w128", "photo-int8-c66fa8f5.pt",
            "c66fa8f5edb78194f1edf90d90165d02427a037591dd90ecc0a030fab7d00a2f", "int8"),
        ShippedModel(  # the same, calibrated on 64 crops, its last iterate exported
            "photo-w128", "photo-int8-bc27879a.pt",
            "bc27879ae24d7e39bae1d831a593472a78b29b4ca8a0bb2c5862fe62b92133b4", "int8"),
        ShippedModel(  # photo release e28d14b3 (64 wide) in the 8-bit arithmetic
            "photo-ycocg", "photo-int8-a7b51ba5.pt",
            "a7b51ba523c50c84b0e2f0e49ed76d27d560bb1c400b7a97af584e605f6d5b01", "int8"),
        ShippedModel(  # photo release affb10d8 in the 8-bit arithmetic
            "photo-ycocg", "photo-int8-2ea29f1d.pt",
            "2ea29f1d5c38d97c6b35e2147414cdacef92883aad2cead0627ca097628fe714", "int8"),
        ShippedModel(  # photo release 24dff000 in the 8-bit arithmetic
            "photo", "photo-int8-7a3f1952.pt",
            "7a3f19523483423e378ca02e7a475f8e18ee9cc63609d0c7caf02b0d94abd739", "int8"),),
    "photo-grey": (ShippedModel(
        "photo-grey", "photo-grey-162fe29a.pt",
        "162fe29a3a8a94a55e38edcb81cc23f46873dc6a5680e255518b1663c01dab3a"),),
    "cifar10": (ShippedModel("cifar10-ycocg", "cifar10-43a6de5f.pt",
                             "43a6de5f8fe2cc6d347a6fac56b538822a929b5e6138e0d0b8d750ef5059ef34"),
                ShippedModel("cifar10-ycocg", "cifar10-1e2c6801.pt",
                             "1e2c6801e13788a1c75aa96ea147d1f2a43aff96f6dd676e84c0875584de8084"),
                ShippedModel("cifar10-ycocg", "cifar10-fca2c150.pt",
                             "fca2c15021c06c2210c35389e665f0b265b6a27e5094bafcfa31a5752878022a"),
                ShippedModel("cifar10", "cifar10-ab2c6ac5.pt",
                             "ab2c6ac5f787392abccfa394b982caf79208bb99bc5acfb8d758426f54d9cd64"),
                ShippedModel("cifar10", "cifar10-291f5ecb.pt",
                             "291f5ecba1b305c0a3a041792e967901c3752459b7a2a8e9632495bf4b0b98f8"),),
    "cifar10-int8": (
        ShippedModel(  # the same weights in the int8 arithmetic (7-bit activations)
            "cifar10-w256", "cifar10-int8-9ba6f4c7.pt",
            "9ba6f4c7593239a3f587f8bc0019b39dda9d3e0fb942ecc35798fa74ed2b8d51", "int8"),
        ShippedModel(  # the same, calibrated on 64 crops, its last iterate exported
            "cifar10-w256", "cifar10-int8-127860ab.pt",
            "127860abb6f8f73a390ca4e57e0ede46cf88050c855e26736e6a2c7809d20ec3", "int8"),
        ShippedModel(  # cifar10 release 43a6de5f in the 8-bit arithmetic
            "cifar10-ycocg", "cifar10-int8-b674815d.pt",
            "b674815d1491958c6a9e4d52dd129653587c55eeb122cd59e3a7bee0a1d9c638", "int8"),
        ShippedModel(  # cifar10 release fca2c150 in the 8-bit arithmetic
            "cifar10-ycocg", "cifar10-int8-e812eb3f.pt",
            "e812eb3ffe750086b4c3cc4cc640b601253204ec79411668905ff8030730e0e4", "int8"),
        ShippedModel(  # cifar10 release ab2c6ac5 in the 8-bit arithmetic
            "cifar10", "cifar10-int8-67434443.pt",
            "67434443b4d658265e04a3291d2d9a9087d6cdf1e3627bedb18b05fb4c7dc824", "int8"),),
}


def preset(name: str) -> FlowConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ModelError(f"unknown preset {name!r}; presets: {', '.join(sorted(PRESETS))}") from None


def release(name: str, model_id: bytes | None = None) -> ShippedModel:
    """The weights of shipped model ``name`` whose sha256 starts with ``model_id`` (the id
    a file records), current or earlier; the current ones when none match or no id is given."""
    current = SHIPPED[name]
    if model_id:
        for entry in (current, *EARLIER.get(name, ())):
            if bytes.fromhex(entry.sha256).startswith(model_id):
                return entry
    return current


def load_model(name_or_path: str = DEFAULT_MODEL,
               model_id: bytes | None = None) -> IntegerDiscreteFlow:
    """Load a shipped model by name (the release with ``model_id``, see :func:`release`), or
    any model file by path. For names and paths a user gives (``--model``): a model name
    read from an .idf file is looked up in ``SHIPPED`` only, never opened as a path
    (:func:`idfzip.api.decompress`)."""
    if name_or_path in SHIPPED:
        entry = release(name_or_path, model_id)
        with resources.as_file(WEIGHTS / entry.filename) as file:
            model = load_model_file(file, expected_sha256=entry.sha256)
        model.name = name_or_path
        return model
    if Path(name_or_path).exists() or "/" in name_or_path or name_or_path.endswith(".pt"):
        model = load_model_file(name_or_path)
        model.name = Path(name_or_path).stem
        return model
    if name_or_path in PRESETS:
        raise ModelError(f"model {name_or_path!r} has no shipped weights yet; "
                         f"train it with: idfzip train --preset {name_or_path} ...")
    known = ", ".join(sorted(SHIPPED)) or "none"
    raise ModelError(f"unknown model {name_or_path!r} (shipped models: {known}; "
                     "or give the path of a .pt model file)")


class CodingModel:
    """An integer-exported flow with the name and weight hash that files record."""

    def __init__(self, model: IntegerDiscreteFlow, name: str):
        # a float model is exported on a copy: the caller's model stays as it was
        self.model = model if model.is_integer else to_integer(copy.deepcopy(model))
        self.name = name.encode()[:255].decode(errors="ignore")  # what a file can record
        self.sha256 = bytes.fromhex(weights_sha256(self.model.state_dict()))
        self.codec = FlowCodec(self.model)

    @property
    def channels(self) -> int:
        return self.model.config.channels

    def to(self, device: str) -> "CodingModel":
        self.model.to(device)
        return self


def coding_model(name_or_path: str = DEFAULT_MODEL, device: str = "cpu",
                 model_id: bytes | None = None) -> CodingModel:
    """Load (once per process, device and release) a model by name or path, exported to
    integer arithmetic; ``model_id`` picks the release of a shipped model a file was made
    with."""
    if name_or_path in SHIPPED:  # one cache entry per release, however its id was given
        model_id = bytes.fromhex(release(name_or_path, model_id).sha256)
    return _coding_model(name_or_path, device, model_id)


@lru_cache(maxsize=8)
def _coding_model(name_or_path: str, device: str, model_id: bytes | None) -> CodingModel:
    model = load_model(name_or_path, model_id)
    name = name_or_path if name_or_path in SHIPPED else Path(name_or_path).stem
    return CodingModel(model, name).to(device)


def shipped_table() -> list[dict]:
    """What ``idfzip models`` lists: each shipped model's architecture, size, weights and role."""
    rows = []
    for name, entry in sorted(SHIPPED.items()):
        config = PRESETS[entry.preset]
        params = sum(p.numel() for p in IntegerDiscreteFlow(config).parameters())
        role = [f"default for {'RGB' if c == 3 else 'grey'}" for c, default in
                DEFAULT_MODELS.items() if default == name]
        rows.append({"model": name, "images": "RGB" if config.channels == 3 else "grey",
                     "flow": f"{config.levels} levels x {config.steps_per_level} steps",
                     "colour": {"none": "-"}.get(config.colour_transform,
                                                 config.colour_transform),
                     "parameters": f"{params / 1e6:.2f}M", "arithmetic": entry.arithmetic,
                     "sha256": entry.sha256[:8],
                     "earlier releases": str(len(EARLIER.get(name, ()))),
                     "use": ", ".join(role)})
    return rows
