"""The flow's commands: bpd, latents, sample, train."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from idfzip import IntegerDiscreteFlow
from idfzip.cli import main
from idfzip.intnet import to_float, to_integer
from idfzip.runtime import fastest_precision
from idfzip.weights import load_model_file, save_model
from idfzip.zoo import DEFAULT_MODELS, PRESETS, SHIPPED

from .conftest import randomize, tiny_model


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny.pt"
    save_model(tiny_model(std=0.1), path)
    return str(path)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (13, 22, 3), dtype=np.uint8)).save(path)
    return str(path)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_bpd_prints_one_line_per_image_and_a_total(model_file, photo):
    result = invoke("bpd", photo, photo, "--model", model_file)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith(photo) and lines[2].startswith("total")
    assert float(lines[0].split()[1]) > 0


def test_latents_are_saved_and_rendered(model_file, photo, tmp_path):
    out, png = tmp_path / "z.npz", tmp_path / "z.png"
    result = invoke("latents", photo, "-o", out, "--png", png, "--model", model_file)
    assert result.exit_code == 0, result.output
    z = np.load(out)
    assert int(z["height"]) == 13 and int(z["width"]) == 22
    assert sum(z[k].size for k in z.files if k.startswith("level")) == 3 * 16 * 24
    assert Image.open(png).mode == "L"


def test_sample_writes_a_grid(model_file, tmp_path):
    out = tmp_path / "grid.png"
    result = invoke("sample", "-n", 4, "--height", 8, "--width", 12, "--seed", 1, "-o", out,
                    "--model", model_file)
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (2 * 12 + 2, 2 * 8 + 2)


def test_train_from_the_command_line(tmp_path, photo):
    out = tmp_path / "run"
    result = invoke("train", "--data", photo, "--data", photo, "--preset", "cifar10", "--out",
                    out, "--steps", 2, "--batch-size", 2, "--crop", 8, "--eval-every", 2,
                    "--threads", 1, "-q")
    assert result.exit_code == 0, result.output
    assert (out / "model.pt").exists() and (out / "checkpoint.pt").exists()
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["train_config"]["precision"] == fastest_precision("cpu")  # the default
    result = invoke("bpd", photo, "--model", out / "model.pt")
    assert result.exit_code == 0, result.output


def test_train_grows_a_smaller_model_given_with_init(tmp_path):
    photo = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8)).save(photo)
    small = randomize(IntegerDiscreteFlow(PRESETS["photo-r1"]), std=0.02)  # photo-deep's base
    save_model(to_integer(small), tmp_path / "small.pt")  # an export, as shipped models are
    small = to_float(load_model_file(tmp_path / "small.pt"))
    out = tmp_path / "run"
    result = invoke("train", "--data", photo, "--data", photo, "--preset", "photo-deep", "--init",
                    tmp_path / "small.pt", "--out", out, "--steps", 1, "--batch-size", 1,
                    "--crop", 16, "--lr", 1e-9, "--threads", 1, "-q")
    assert result.exit_code == 0, result.output
    grown = load_model_file(out / "model.pt")
    assert grown.config == PRESETS["photo-deep"]
    x = torch.from_numpy(np.array(Image.open(photo))).permute(2, 0, 1)[None]
    assert torch.allclose(grown.log_prob(x), small.log_prob(x), rtol=1e-6)


def test_models_lists_every_shipped_model_and_the_defaults():
    result = invoke("models")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:]}
    assert set(lines) == set(SHIPPED)
    for channels, kind in ((3, "RGB"), (1, "grey")):
        assert f"default for {kind}" in lines[DEFAULT_MODELS[channels]]
    for name, entry in SHIPPED.items():
        assert entry.sha256[:8] in lines[name]
        colour = PRESETS[entry.preset].colour_transform
        assert (colour in lines[name].split()) == (colour != "none")


@pytest.mark.parametrize("args, message", [
    (["bpd", "missing.png"], "missing.png: no such file"),
    (["bpd", "{junk}"], "not a readable image"),
    (["bpd", "{photo}", "--model", "nope"], "unknown model 'nope'"),
    (["bpd", "{photo}", "--model", "{junk}"], "not an idfzip model file"),
    (["train", "--data", "missing_dir"], "missing_dir: no such file"),
    (["sample", "-t", "0"], "Invalid value"),
    (["train", "--data", "{photo}", "--init", "{model}", "--preset", "photo"],
     "can only be grown"),
])
def test_bad_input_is_one_clear_line_and_nonzero_exit(args, message, photo, model_file,
                                                      tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"hello")
    args = [a.format(photo=photo, junk=junk, model=model_file) for a in args]
    if "--model" not in args and args[0] != "train":
        args += ["--model", model_file]
    result = invoke(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_installed_entry_point_runs(photo, model_file):
    done = subprocess.run([sys.executable, "-m", "idfzip", "bpd", photo, "--model", model_file],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "idfzip", "bpd", "nothing.png", "--model",
                           model_file],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr == "idfzip: nothing.png: no such file\n"
    done = subprocess.run([sys.executable, "-m", "idfzip", "bpd", "--no-such-option"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--no-such-option" in done.stderr
