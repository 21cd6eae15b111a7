"""Processes and the command line: interrupts, worker pools, thread counts, the torch version,
and refusals (x.idf.idf, binary to a terminal, a foreign checkpoint)."""

import os
import pty
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import idfzip
from idfzip import jobs, runtime
from idfzip.cli import main
from idfzip.files import temp_prefix
from idfzip.intnet import to_integer
from idfzip.jobs import Job, run_jobs
from idfzip.train import CHECKPOINT_NAME
from idfzip.weights import save_model

from .conftest import mid_grey, sharp_model

REPO = Path(__file__).resolve().parents[1]


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def idfzip_process(*args, **popen):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "idfzip", *map(str, args)], env=env,
                            **popen)


def temp_files(folder: Path):
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".part"))


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "models" / "tiny.pt"
    path.parent.mkdir()
    save_model(to_integer(sharp_model()), path)
    return str(path)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(mid_grey(np.random.default_rng(0), 20, 24)).save(path)
    return path


# -- interrupts -----------------------------------------------------------------------------

def photos(folder: Path, count: int, side: int) -> list[Path]:
    """Photo-like images (smooth gradients, a little noise) that take the shipped model a
    second or so each."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, side)
    paths = []
    for i in range(count):
        base = 60 + 120 * np.add.outer(ramp, ramp[::-1] * (i % 3)) / (1 + i % 3)
        image = base[..., None] + [0, 20 * (i % 4), 40] + rng.normal(0, 3, (side, side, 3))
        paths.append(folder / f"p{i}.png")
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(paths[-1])
    return paths


@pytest.mark.parametrize("target, signum, status", [
    ("process-group", signal.SIGINT, 130),  # Ctrl-C
    ("main-process", signal.SIGINT, 130),
    ("main-process", signal.SIGTERM, 143),  # kill, timeout, a batch system
], ids=["ctrl-c", "sigint-to-main", "sigterm-to-main"])
def test_an_interrupt_stops_parallel_workers_at_once_and_leaves_no_late_outputs(
        tmp_path, target, signum, status):
    """Ctrl-C (SIGINT to the whole process group), or SIGINT or SIGTERM to the main process
    alone, once files are being coded with -j 2: the command ends within seconds with status
    130 (143), every output there is complete, none appears after the abort and no temp file
    is left."""
    inputs = photos(tmp_path, 8, 384)
    proc = idfzip_process("compress", *inputs, "-j", 2, "-q", "--device", "cpu",
                          stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*.idf")):  # work has started: the first file is done
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no output after 120 s"
        time.sleep(0.02)
    signalled = time.monotonic()
    if target == "process-group":
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    try:
        stderr = proc.communicate(timeout=15)[1].decode()
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("still running 15 s after SIGINT") from None
    took = time.monotonic() - signalled
    at_exit = sorted(tmp_path.glob("*.idf"))
    time.sleep(1.0)  # a worker left behind would write its file now
    assert proc.returncode == status
    assert stderr == ("idfzip: aborted\n" if signum == signal.SIGINT else "")
    assert took < 5, f"took {took:.1f} s to stop"
    assert sorted(tmp_path.glob("*.idf")) == at_exit
    assert 0 < len(at_exit) < len(inputs)
    assert temp_files(tmp_path) == []
    for out in at_exit:  # complete: the same bytes as an uninterrupted compression
        assert out.read_bytes() == idfzip.compress(Image.open(out.with_suffix(".png")))


def stuck_or_quick(job: Job):
    """Job 0 starts its output, then ignores SIGTERM and hangs (as a worker stuck in a long
    native call would); the others return at once."""
    if not job.path.endswith("0.png"):
        return "quick"
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(job.out).parent.joinpath(temp_prefix(Path(job.out).name) + "x.part").write_bytes(b"")
    time.sleep(60)


def crash(job: Job):
    os._exit(3)


def fail(job: Job):
    raise ValueError(f"{job.path}: bad")


def thread_count(job: Job):
    return torch.get_num_threads()


def make_jobs(tmp_path, count):
    return [Job(str(tmp_path / f"{i}.png"), str(tmp_path / f"{i}.idf"), False, None, "cpu", 1)
            for i in range(count)]


def test_a_stuck_worker_is_killed_and_its_temp_file_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "STOP_GRACE", 0.5)
    results = run_jobs(stuck_or_quick, make_jobs(tmp_path, 2), 2)
    assert next(results)[1] == "quick"
    ready = time.monotonic() + 60
    while not temp_files(tmp_path) and time.monotonic() < ready:
        time.sleep(0.02)
    assert len(temp_files(tmp_path)) == 1
    started = time.monotonic()
    results.close()  # what an interrupt in the caller does
    assert time.monotonic() - started < 5
    assert temp_files(tmp_path) == []


def test_workers_report_errors_and_deaths_and_use_the_threads_given(tmp_path):
    work = make_jobs(tmp_path, 3)
    threads = [done for _, done, error in run_jobs(thread_count, work, 2, threads=3)]
    assert threads == [3, 3, 3]
    (job, done, error), = list(run_jobs(fail, work[:1], 1))
    assert done is None and isinstance(error, ValueError) and "0.png: bad" in str(error)
    assert "raise ValueError" in str(error.__cause__)  # the worker's traceback
    from concurrent.futures.process import BrokenProcessPool
    outcome = list(run_jobs(crash, work, 2))
    assert sorted(job.path for job, _, _ in outcome) == sorted(job.path for job in work)
    assert all(isinstance(error, BrokenProcessPool) for _, _, error in outcome)


# -- threads --------------------------------------------------------------------------------

def test_threads_per_process_share_the_cores():
    assert runtime.threads_per_process(None, 1, default=8, cores=16) == 8
    assert runtime.threads_per_process(None, 2, default=16, cores=16) == 8
    assert runtime.threads_per_process(None, 3, default=16, cores=16) == 5
    assert runtime.threads_per_process(None, 32, default=16, cores=16) == 1
    assert runtime.threads_per_process(None, 2, default=16, cores=4) == 2  # taskset, cgroups
    assert runtime.threads_per_process(None, 2, default=1, cores=16) == 1  # OMP_NUM_THREADS=1
    assert runtime.threads_per_process(6, 4, default=16, cores=16) == 6  # --threads wins


def test_training_precision_is_bfloat16_only_where_the_hardware_has_bfloat16_units():
    assert runtime.fastest_precision("cuda") == "bfloat16"
    avx2 = "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni\n"
    assert runtime.fastest_precision("cpu", avx2) == "float32"
    assert runtime.fastest_precision("cpu", avx2.replace("fma", "fma avx512_bf16")) == "bfloat16"
    assert runtime.fastest_precision("cpu", avx2.replace("fma", "amx_bf16 amx_tile")) == "bfloat16"
    assert runtime.fastest_precision("cpu", "") == "float32"  # no flags at all


def test_idle_threads_are_made_to_sleep_only_where_that_is_safe():
    env = {}
    assert runtime.quiet_thread_waits(env, modules={}) is True
    assert env == {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
    for users in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "1000"},
                  {"KMP_BLOCKTIME": "200"}):
        env = dict(users)
        assert runtime.quiet_thread_waits(env, modules={}) is False and env == users
    env = {}
    assert runtime.quiet_thread_waits(env, modules={"torch": torch}) is False and env == {}


def python_says(code: str, **env_changes) -> str:
    env = {k: v for k, v in os.environ.items() if k not in runtime.WAIT_SETTINGS}
    env.update(env_changes, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_idfzip_first_sets_the_wait_policy_before_torch_loads():
    show = "import os; print(os.environ.get('OMP_WAIT_POLICY'))"
    assert python_says(f"import idfzip; {show}") == "PASSIVE"
    assert python_says(f"import idfzip; {show}", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert python_says(f"import torch, idfzip; {show}") == "None"  # too late: left alone


def test_threads_option_reaches_torch_and_the_workers(tmp_path, photo, model_file,
                                                      monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    result = invoke("compress", photo, "--threads", 3, "--model", model_file, "-q")
    assert result.exit_code == 0, result.output
    assert seen == [3]

    def fake_run_jobs(work, jobs_, workers, threads):
        seen.append((workers, threads))
        yield from ()
    monkeypatch.setattr(jobs, "run_jobs", fake_run_jobs)
    second = tmp_path / "b.png"
    second.write_bytes(photo.read_bytes())
    for extra, threads in ((["--threads", 2], 2),
                           ([], runtime.threads_per_process(None, 2, torch.get_num_threads(),
                                                            runtime.available_cores()))):
        seen.clear()
        result = invoke("compress", photo, second, "-j", 2, "-f", "--model", model_file,
                        *extra)
        assert result.exit_code == 0, result.output
        assert seen == [(2, threads)]
    assert "--threads" in invoke("compress", "--help").output


# -- refusals -------------------------------------------------------------------------------

def test_compressing_an_idf_file_is_refused_like_gzip_refuses_x_gz(tmp_path, photo,
                                                                   model_file):
    assert invoke("compress", photo, "--model", model_file, "-q").exit_code == 0
    idf = tmp_path / "photo.idf"
    before = idf.read_bytes()
    result = invoke("compress", idf, "--model", model_file)
    assert result.exit_code == 1 and "already has the .idf suffix" in result.output
    assert not (tmp_path / "photo.idf.idf").exists() and idf.read_bytes() == before
    other = tmp_path / "other.png"
    other.write_bytes(photo.read_bytes())
    upper = tmp_path / "UP.IDF"
    upper.write_bytes(before)
    result = invoke("compress", upper, other, "--model", model_file, "-q")
    assert result.exit_code == 1 and "1 of 2 files failed" in result.output
    assert (tmp_path / "other.idf").exists() and not (tmp_path / "UP.IDF.idf").exists()


def on_a_terminal(*args, stdin: bytes):
    """Run idfzip with stdout on a pseudo-terminal; its exit status, stderr and what reached
    the terminal."""
    leader, follower = pty.openpty()
    proc = idfzip_process(*args, stdin=subprocess.PIPE, stdout=follower, stderr=subprocess.PIPE)
    os.close(follower)
    stderr = proc.communicate(stdin, timeout=120)[1].decode()
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    return proc.returncode, stderr, screen


def test_binary_output_is_not_written_to_a_terminal(photo, model_file):
    code, stderr, screen = on_a_terminal("compress", "-", "--model", model_file,
                                         stdin=photo.read_bytes())
    assert code == 1 and screen == b""
    assert stderr == ("idfzip: compressed data not written to a terminal; redirect the "
                      "output or use -f to force\n")
    code, stderr, screen = on_a_terminal("compress", "-", "-o", "-", "-f", "-q",
                                         "--model", model_file, stdin=photo.read_bytes())
    assert code == 0 and b"IDFZ" in screen
    data = idfzip.compress(Image.open(photo), model_file)
    code, stderr, screen = on_a_terminal("decompress", "-", "--model", model_file, stdin=data)
    assert code == 1 and screen == b"" and "image data not written to a terminal" in stderr


@pytest.fixture
def train_args(tmp_path):
    data = tmp_path / "data.png"
    Image.fromarray(mid_grey(np.random.default_rng(1), 16, 16)).save(data)
    return ["train", "--data", data, "--data", data, "--preset", "cifar10", "--out",
            tmp_path / "run", "--steps", 1, "--batch-size", 2, "--crop", 8, "--threads", 1,
            "-q", "--resume"]


@pytest.mark.parametrize("content, message", [
    (b"garbage, not a checkpoint", "not a readable training checkpoint"),
    (b"", "not a readable training checkpoint"),
    ("model", "not a training checkpoint of idfzip"),
    ("mismatched", "checkpoint does not fit the model"),
], ids=["garbage", "empty", "exported-model", "other-weights"])
def test_resuming_from_a_foreign_or_damaged_checkpoint_is_one_line(tmp_path, train_args,
                                                                   content, message):
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = run / CHECKPOINT_NAME
    if content == "model":  # an exported model.pt put where the checkpoint belongs
        save_model(sharp_model(), checkpoint)
    elif content == "mismatched":  # the right keys, but weights of another shape
        assert invoke(*train_args).exit_code == 0
        state = torch.load(checkpoint, weights_only=True)
        name = next(iter(state["model"]))
        state["model"][name] = torch.zeros(1)
        torch.save(state, checkpoint)
    else:
        checkpoint.write_bytes(content)
    result = invoke(*train_args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert message in last and str(checkpoint) in last


# -- the torch version ----------------------------------------------------------------------

def fake_torch(version: str, switches: bool):
    switch = types.SimpleNamespace(**({"fp32_precision": "ieee"} if switches else {}))
    backends = types.SimpleNamespace(mkldnn=types.SimpleNamespace(conv=switch, matmul=switch),
                                     cudnn=types.SimpleNamespace(conv=switch),
                                     cuda=types.SimpleNamespace(matmul=switch))
    return types.SimpleNamespace(__version__=version, backends=backends)


def test_the_torch_guard_accepts_new_releases_and_names_the_minimum_to_old_ones():
    assert runtime.release("2.9.0") == (2, 9)
    assert runtime.release("2.10.0a0+git1234abc") == (2, 10)
    assert runtime.release("2.9.1+cpu") == (2, 9)
    assert runtime.release("10") == (10,)
    runtime.require_torch(torch)  # the installed torch
    runtime.require_torch(fake_torch("2.9.0", switches=True))
    runtime.require_torch(fake_torch("3.0.0+cu130", switches=True))
    for old in (fake_torch("2.8.0", switches=False), fake_torch("2.1.2+cpu", switches=False),
                fake_torch("2.9.0", switches=False),  # a build without the switches
                fake_torch("2.8.0", switches=True)):
        with pytest.raises(ImportError, match=r"idfzip needs torch>=2\.9") as err:
            runtime.require_torch(old)
        assert old.__version__ in str(err.value) and "pip install" in str(err.value)
    assert runtime.MIN_TORCH == (2, 9)
    assert '"torch>=2.9"' in (REPO / "pyproject.toml").read_text()


def test_importing_idfzip_with_an_old_torch_fails_with_that_sentence():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", "import torch; torch.__version__ = '2.8.0'; "
                           "import idfzip"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "ImportError: idfzip needs torch>=2.9")
