import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from idfzip import compress, decompress
from idfzip.api import coding_model, describe
from idfzip.intnet import to_integer
from idfzip.weights import (ModelError, load_model_file, pack_integers, save_model,
                            unpack_integers, weights_sha256)
from idfzip.zoo import EARLIER, PRESETS, SHIPPED, load_model

from .conftest import tiny_model


def test_save_load_round_trip_keeps_weights_and_hash(tmp_path):
    model = tiny_model(3)
    digest = save_model(model, tmp_path / "m.pt")
    loaded = load_model_file(tmp_path / "m.pt")
    assert loaded.sha256 == digest == weights_sha256(model.state_dict())
    x = torch.randint(0, 256, (1, 3, 9, 9), dtype=torch.uint8)
    assert loaded.log_prob(x).item() == model.log_prob(x).item()


def test_exports_are_stored_packed_with_the_hash_of_their_float64_weights(tmp_path):
    model = to_integer(tiny_model(3))
    digest = save_model(model, tmp_path / "m.pt")
    stored = torch.load(tmp_path / "m.pt", weights_only=True)["state_dict"]
    assert any(t.dtype == torch.int32 for t in stored.values())
    assert digest == weights_sha256(model.state_dict())
    loaded = load_model_file(tmp_path / "m.pt")
    assert loaded.sha256 == digest
    for name, t in model.state_dict().items():
        assert loaded.state_dict()[name].dtype == t.dtype and torch.equal(loaded.state_dict()[name], t)


def test_packing_keeps_what_int32_cannot_hold_exactly():
    state = {"frac": torch.tensor([0.5, 1.0], dtype=torch.float64),
             "negzero": torch.tensor([-0.0, 2.0], dtype=torch.float64),
             "big": torch.tensor([2.0**40], dtype=torch.float64),
             "ints": torch.tensor([-3.0, 7.0], dtype=torch.float64),
             "float32": torch.tensor([1.0, 2.0])}
    packed = pack_integers(state)
    assert packed["ints"].dtype == torch.int32
    assert all(packed[k].dtype == state[k].dtype for k in ("frac", "negzero", "big", "float32"))
    assert weights_sha256(unpack_integers(packed)) == weights_sha256(state)


def test_model_file_is_plain_tensors_not_a_pickled_module(tmp_path):
    save_model(tiny_model(), tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)  # would fail on pickled classes
    assert set(blob) == {"format", "config", "integer", "state_dict", "sha256"}


def test_damaged_or_foreign_files_are_refused(tmp_path):
    save_model(tiny_model(), tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    blob["state_dict"]["top_prior.logits"] += 1
    torch.save(blob, tmp_path / "tampered.pt")
    with pytest.raises(ModelError, match="sha256"):
        load_model_file(tmp_path / "tampered.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelError, match="not an idfzip model"):
        load_model_file(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="no such model"):
        load_model_file(tmp_path / "missing.pt")


def test_older_integer_exports_are_refused_but_older_float_models_load(tmp_path):
    from idfzip.intnet import to_integer
    for integer in (False, True):
        model = to_integer(tiny_model()) if integer else tiny_model()
        save_model(model, tmp_path / "m.pt")
        blob = torch.load(tmp_path / "m.pt", weights_only=True)
        blob["format"] = "idfzip-model/1"
        torch.save(blob, tmp_path / "old.pt")
        if integer:
            with pytest.raises(ModelError, match="older idfzip"):
                load_model_file(tmp_path / "old.pt")
        else:
            assert load_model_file(tmp_path / "old.pt").sha256 == blob["sha256"]


def test_registry_names_errors_clearly():
    with pytest.raises(ModelError, match="unknown model"):
        load_model("no-such-model")


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_models_load_and_match_their_preset(name):
    from idfzip.intnet import arithmetic_of
    model = load_model(name)
    assert model.config == PRESETS[SHIPPED[name].preset]
    assert model.sha256 == SHIPPED[name].sha256
    assert arithmetic_of(model) == SHIPPED[name].arithmetic


@pytest.mark.parametrize("name,entry", [(name, entry) for name, entries in sorted(EARLIER.items())
                                        for entry in entries])
def test_earlier_releases_load_by_the_id_files_record(name, entry):
    model = load_model(name, bytes.fromhex(entry.sha256[:16]))
    assert model.config == PRESETS[entry.preset]
    assert model.sha256 == entry.sha256 != SHIPPED[name].sha256


DEMO = Path(__file__).resolve().parents[1] / "data" / "demo.png"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_models_code_a_photo_exactly_and_beat_png(name):
    """The shipped weights in use: a lossless round trip of the repository's demo image (a crop
    of it for the CIFAR-10 model, its grey version for a grey model), coded by the flow and
    smaller than PNG, which an untrained or broken model would not be."""
    model = coding_model(name)
    image = Image.open(DEMO).convert("RGB" if model.channels == 3 else "L")
    if model.model.config.levels == 3:  # the CIFAR-10 model: 32x32 images
        image = image.crop((0, 0, 64, 64))
    data = compress(image, model)
    png = io.BytesIO()
    image.save(png, format="PNG", optimize=True)
    assert describe(data)["method"] == "flow" and len(data) < len(png.getvalue())
    assert decompress(data, model).tobytes() == image.tobytes()
