import numpy as np
import pytest
import torch

from idfzip.data import CropSampler, DataError
from idfzip.train import CHECKPOINT_NAME, MODEL_NAME, TrainConfig, evaluate, train
from idfzip.weights import load_model_file

from .conftest import TINY


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    base = np.linspace(0, 255, 40, dtype=np.float64)
    for i in range(6):  # smooth gradients plus a little noise: learnable structure
        img = (base[None, :, None] + rng.normal(0, 4, (40, 40, 3)) + 20 * i).clip(0, 255)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"{i}.png")
    return folder


CONFIG = TrainConfig(steps=12, batch_size=4, crop=16, lr=3e-2, warmup_steps=2, eval_every=6,
                     eval_crop=16, checkpoint_every=3, holdout_fraction=0.2)


def run(folder, out, config=CONFIG, resume=False):
    torch.set_num_threads(1)
    return train(TINY, [str(folder)], out, config, resume=resume, progress=False,
                 log=lambda msg: None)


def test_training_lowers_the_loss_and_exports_a_loadable_model(image_folder, tmp_path):
    model = run(image_folder, tmp_path / "run")
    state = torch.load(tmp_path / "run" / CHECKPOINT_NAME, weights_only=True)
    history = state["history"]
    assert state["step"] == 12 and len(history) == 2
    batch = assert_learned(model, image_folder)
    loaded = load_model_file(tmp_path / "run" / MODEL_NAME)
    assert evaluate(loaded, batch) == pytest.approx(evaluate(model, batch))


def assert_learned(model, folder):
    """The model codes fresh crops of the training images far better than an untrained one."""
    batch = list(CropSampler(_images(folder), 16, seed=1).batch(0, 8))
    assert evaluate(model, batch) < evaluate(type(model)(TINY), batch) - 0.5
    return batch


def test_resume_continues_exactly(image_folder, tmp_path):
    straight = run(image_folder, tmp_path / "a")
    half = TrainConfig(**{**CONFIG.__dict__, "steps": 6})
    run(image_folder, tmp_path / "b", half)
    resumed = run(image_folder, tmp_path / "b", resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_checkpoint_from_before_newer_model_options_resumes(image_folder, tmp_path):
    """Options added to FlowConfig since a checkpoint was written take their defaults (the
    shipped checkpoints in data/checkpoints predate prior_stages)."""
    half = TrainConfig(**{**CONFIG.__dict__, "steps": 6})
    run(image_folder, tmp_path / "b", half)
    path = tmp_path / "b" / CHECKPOINT_NAME
    state = torch.load(path, weights_only=True)
    for option in ("prior_stages", "top_stages"):
        del state["model_config"][option]
    torch.save(state, path)
    assert run(image_folder, tmp_path / "b", resume=True).config == TINY


def test_a_finished_run_resumed_writes_its_model_again(image_folder, tmp_path):
    """A copied checkpoint (a shipped one) whose steps are all done still yields model.pt."""
    run(image_folder, tmp_path / "a")
    (tmp_path / "a" / MODEL_NAME).unlink()
    model = run(image_folder, tmp_path / "a", resume=True)
    loaded = load_model_file(tmp_path / "a" / MODEL_NAME)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  loaded.state_dict().values()))


def test_unreadable_data_is_a_clear_error(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="a.png"):
        run(tmp_path / "junk", tmp_path / "out")
    with pytest.raises(DataError, match="no such file"):
        run(tmp_path / "missing", tmp_path / "out")


def test_crops_depend_only_on_seed_and_step():
    images = [np.random.default_rng(i).integers(0, 256, (3, 20, 30), dtype=np.uint8)
              for i in range(3)]
    a = CropSampler(images, 8, seed=3)
    assert np.array_equal(a.batch(5, 4), CropSampler(images, 8, seed=3).batch(5, 4))
    assert not np.array_equal(a.batch(5, 4), a.batch(6, 4))
    with pytest.raises(DataError):
        CropSampler(images, 64)


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, decay_per_1000=0.5)
    assert cfg.lr_at(0) == pytest.approx(1e-4)
    assert cfg.lr_at(9) == pytest.approx(1e-3 * 0.5 ** 0.009)
    assert cfg.lr_at(2000) == pytest.approx(0.25e-3)


def test_anneal_phase_changes_the_rate_of_decay_without_a_jump():
    slow = TrainConfig(lr=1e-3, warmup_steps=0, decay_per_1000=0.9)
    cfg = TrainConfig(lr=1e-3, warmup_steps=0, decay_per_1000=0.9, anneal_from=3000,
                      anneal_decay_per_1000=0.5)
    for step in (0, 1500, 3000):
        assert cfg.lr_at(step) == slow.lr_at(step)
    assert cfg.lr_at(3001) == pytest.approx(slow.lr_at(3000), rel=1e-3)
    assert cfg.lr_at(5000) == pytest.approx(1e-3 * 0.9 ** 3 * 0.25)


def test_a_stretched_schedule_keeps_its_shape():
    cfg = TrainConfig(steps=10000, lr=1e-3, warmup_steps=100, decay_per_1000=0.9,
                      anneal_from=8000, anneal_decay_per_1000=0.5)
    for steps in (2500, 10000, 40000):
        fitted = cfg.stretched_to(steps)
        k = steps / cfg.steps
        assert fitted.steps == steps and fitted.anneal_from == 8000 * k
        for share in (0.5, 0.8, 0.9, 1.0):
            assert fitted.lr_at(round(share * steps)) == pytest.approx(
                cfg.lr_at(round(share * cfg.steps)), rel=1e-9)


def test_a_time_budget_fits_the_schedule_to_the_pace_and_stops_inside_it(
        image_folder, tmp_path, monkeypatch):
    """A clock that moves one second a step: the pace measured is 1 step/s, so a 200 s budget
    stretches a 1000-step schedule to the ~190 steps the budget holds; a 50 s budget ends
    at the budget even before the pace is known."""
    import idfzip.train as training
    clock = iter(range(10 ** 6))
    monkeypatch.setattr(training.time, "time", lambda: float(next(clock)))
    logs = []
    config = TrainConfig(**{**CONFIG.__dict__, "steps": 1000, "anneal_from": 800,
                            "checkpoint_every": 1000, "eval_every": 1000})
    torch.set_num_threads(1)
    train(TINY, [str(image_folder)], tmp_path / "a", config, progress=False, log=logs.append,
          time_budget=200)
    state = torch.load(tmp_path / "a" / CHECKPOINT_NAME, weights_only=True)
    fitted = TrainConfig(**state["train_config"])
    assert 150 < fitted.steps == state["step"] < 200
    assert fitted.anneal_from == round(800 * fitted.steps / 1000)
    assert any("time budget" in line for line in logs)
    train(TINY, [str(image_folder)], tmp_path / "b", config, progress=False, log=logs.append,
          time_budget=50)
    state = torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] < 50 and state["history"][-1]["step"] == state["step"]
    assert (tmp_path / "b" / MODEL_NAME).exists()


def test_a_time_budget_follows_a_pace_that_changes(image_folder, tmp_path, monkeypatch):
    """The clock moves one second a step, then two from its 150th second: the refits see
    the slower pace and move the end earlier, so the run ends on its (annealed) schedule
    inside the budget instead of being cut off by it."""
    import idfzip.train as training
    ticks = iter(range(10 ** 6))

    def clock():
        tick = next(ticks)
        return float(tick if tick < 150 else 2 * tick - 150)

    monkeypatch.setattr(training.time, "time", clock)
    monkeypatch.setattr(training, "REFIT_EVERY", 20)
    logs = []
    config = TrainConfig(**{**CONFIG.__dict__, "steps": 1000, "anneal_from": 800,
                            "checkpoint_every": 1000, "eval_every": 1000})
    torch.set_num_threads(1)
    train(TINY, [str(image_folder)], tmp_path, config, progress=False, log=logs.append,
          time_budget=300)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    fitted = TrainConfig(**state["train_config"])
    assert state["step"] == fitted.steps < 240
    assert not any("spent" in line for line in logs)
    assert sum("time budget" in line for line in logs) >= 2


def _images(folder):
    from idfzip.data import load_images
    return load_images(folder)


def test_quantisation_aware_training_runs_on_the_export_grids(image_folder, tmp_path):
    from idfzip.nets import ConvNet
    config = TrainConfig(**{**CONFIG.__dict__, "fake_quant": "limb"})
    model = run(image_folder, tmp_path / "qat", config)
    nets = [m for m in model.modules() if isinstance(m, ConvNet)]
    assert nets and all(net.fake_quant for net in nets)
    assert_learned(model, image_folder)


def test_int8_fine_tuning_calibrates_then_trains_on_the_8bit_grids(image_folder, tmp_path):
    """--init with --fake-quant int8: the start model's hidden activations are rescaled to fill
    the grid (its likelihood unchanged), then training runs fake-quantised; the 8-bit export of
    the result codes what its fake-quantised float model promises, within rounding ties."""
    import copy

    from idfzip.intnet import to_integer
    from idfzip.nets import ConvNet
    start = run(image_folder, tmp_path / "start")
    messages = []
    config = TrainConfig(**{**CONFIG.__dict__, "fake_quant": "int8", "lr": 1e-3,
                            "calibration_crops": 9})
    torch.set_num_threads(1)
    tuned = train(TINY, [str(image_folder)], tmp_path / "int8", config, progress=False,
                  init_weights=start.state_dict(), log=messages.append)
    assert any("rescaled on 9 crops" in m for m in messages)
    nets = [m for m in tuned.modules() if isinstance(m, ConvNet)]
    assert nets and all(net.fake_quant == "int8" for net in nets)
    batch = assert_learned(tuned, image_folder)
    fake = evaluate(tuned, batch)
    for net in nets:
        net.fake_quant = ""
    exported = to_integer(copy.deepcopy(tuned), "int8")
    assert abs(evaluate(exported, batch) - fake) < 0.05


def test_bfloat16_training_learns_and_keeps_the_last_layer_in_float32(image_folder, tmp_path):
    from idfzip.nets import ConvNet
    config = TrainConfig(**{**CONFIG.__dict__, "precision": "bfloat16"})
    model = run(image_folder, tmp_path / "bf16", config)
    net = next(m for m in model.modules() if isinstance(m, ConvNet))
    assert net.hidden_dtype == torch.bfloat16
    x = torch.randint(-300, 300, (2, net.layers[0].in_channels, 8, 8)).float()
    with torch.no_grad():
        half = net(x)
        net.hidden_dtype = None
        full = net(x)
    assert half.dtype == torch.float32 and not torch.equal(half, full)  # bfloat16 inside
    assert torch.allclose(half, full, atol=0.05 * float(full.abs().max()) + 1e-3)
    assert_learned(model, image_folder)
    loaded = load_model_file(tmp_path / "bf16" / MODEL_NAME)  # a plain float32 model again
    assert all(m.hidden_dtype is None for m in loaded.modules() if isinstance(m, ConvNet))



AVERAGED = TrainConfig(**{**CONFIG.__dict__, "ema": 0.9})


def test_averaged_weights_are_the_moving_average_and_are_exported(image_folder, tmp_path):
    """With ema, model.pt and the returned model hold the moving average of the trained
    weights, starting from the initial ones (recomputed here from the trained weights of
    every step, the run resumed after each), not the last iterate."""
    from idfzip.model import IntegerDiscreteFlow
    torch.manual_seed(AVERAGED.seed)  # what train() builds before its first step
    expected = IntegerDiscreteFlow(TINY).state_dict()
    path = tmp_path / "run" / CHECKPOINT_NAME
    for steps in range(1, 5):
        model = run(image_folder, tmp_path / "run",
                    TrainConfig(**{**AVERAGED.__dict__, "steps": steps}), resume=True)
        raw = torch.load(path, weights_only=True)["model"]
        names = [name for name, _ in model.named_parameters()]
        expected = {k: 0.9 * expected[k] + 0.1 * raw[k] for k in names}
        averaged = model.state_dict()
        for name in names:
            torch.testing.assert_close(averaged[name], expected[name], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(averaged[n], raw[n]) for n in names)
    loaded = load_model_file(tmp_path / "run" / MODEL_NAME)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                  model.state_dict().values()))


def test_resume_with_averaged_weights_continues_exactly(image_folder, tmp_path):
    straight = run(image_folder, tmp_path / "a", AVERAGED)
    run(image_folder, tmp_path / "b", TrainConfig(**{**AVERAGED.__dict__, "steps": 6}))
    resumed = run(image_folder, tmp_path / "b", AVERAGED, resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
