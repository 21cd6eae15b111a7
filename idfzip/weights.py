"""Saving and loading models as a config + ``state_dict`` + sha256, never a pickled module."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch

from .intnet import ExactNet, arithmetic_of, to_integer
from .model import FlowConfig, IntegerDiscreteFlow

MODEL_FORMAT = "idfzip-model/2"
# Float models of format 1 load as they are; its integer exports used other grids (float64
# arithmetic), which the current integer networks do not compute.
FLOAT_ONLY_FORMATS = ("idfzip-model/1",)


class ModelError(ValueError):
    """A model file or name could not be loaded."""


def weights_sha256(state_dict: dict) -> str:
    """Hash of every tensor's name, dtype, shape and bytes, in key order: the identity of a model
    that does not depend on how the file was pickled."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def atomic_save(obj, path: str | Path) -> None:
    """torch.save to a temporary file beside ``path``, then rename: never a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_model(model: IntegerDiscreteFlow, path: str | Path) -> str:
    """Write ``model`` to ``path``; returns its weight hash (that of the float64 tensors, also
    where they are stored packed, see :func:`pack_integers`)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    digest = weights_sha256(state)
    blob = {"format": MODEL_FORMAT, "config": model.config.to_dict(),
            "integer": model.is_integer, "state_dict": pack_integers(state), "sha256": digest}
    if model.is_integer:  # which integer arithmetic decodes it (absent in earlier files: limb)
        blob["arithmetic"] = arithmetic_of(model)
    atomic_save(blob, path)
    return digest


def pack_integers(state: dict) -> dict:
    """Integer-valued float64 tensors (an export's weights and biases) stored as int32: half
    the bytes of a weight file. :func:`unpack_integers` restores the float64 tensors exactly,
    so the weight hash, which is taken over them, does not depend on how a file stores them."""
    packed = {}
    for name, t in state.items():
        if t.dtype == torch.float64 and t.numel() and bool((t == t.round()).all()) \
                and float(t.abs().max()) < 2**31 and not bool((torch.signbit(t) & (t == 0)).any()):
            t = t.to(torch.int32)
        packed[name] = t
    return packed


def unpack_integers(state: dict) -> dict:
    return {name: t.double() if t.dtype == torch.int32 else t for name, t in state.items()}


def load_model_file(path: str | Path, expected_sha256: str | None = None) -> IntegerDiscreteFlow:
    """Load a model written by :func:`save_model`, checking its weight hash. Only a regular
    file is read (a FIFO or a device such as /dev/zero would block or never end)."""
    if not Path(path).is_file():
        raise ModelError(f"{path}: " + ("not a regular file" if Path(path).exists()
                                        else "no such model file"))
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file") from None
    except Exception as err:  # torch raises many types for foreign or damaged files
        raise ModelError(f"{path}: not an idfzip model file ({type(err).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") not in (MODEL_FORMAT, *FLOAT_ONLY_FORMATS):
        raise ModelError(f"{path}: not an idfzip model file")
    if blob["format"] != MODEL_FORMAT and blob.get("integer"):
        raise ModelError(f"{path}: integer export of an older idfzip; export its float model "
                         "again with: idfzip export MODEL.pt")
    blob["state_dict"] = unpack_integers(blob["state_dict"])
    digest = weights_sha256(blob["state_dict"])
    if digest != blob["sha256"] or (expected_sha256 and digest != expected_sha256):
        raise ModelError(f"{path}: weights do not match their sha256 (damaged file?)")
    try:
        model = IntegerDiscreteFlow(FlowConfig(**blob["config"]))
        if blob.get("integer"):  # files from before the 8-bit arithmetic name none: limbs
            model = to_integer(model, blob.get("arithmetic") or "limb")
        model.load_state_dict(blob["state_dict"])
        for module in model.modules():
            if isinstance(module, ExactNet):
                module.check_bound()
    except (TypeError, ValueError, RuntimeError) as err:
        raise ModelError(f"{path}: model configuration does not fit its weights ({err})") from None
    model.sha256 = digest
    return model.eval()
