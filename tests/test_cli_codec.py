"""The coding commands (compress, decompress, info) and the Pillow plugin."""

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import idfzip  # noqa: F401  (registers the Pillow plugin)
import idfzip.api
from idfzip.api import CodingModel, compress, describe
from idfzip.cli import main, run
from idfzip.entropy import CodingError
from idfzip.intnet import to_integer
from idfzip.weights import ModelError, save_model

from .conftest import mid_grey, sharp_model



def smooth(seed, height=24, width=24):
    return mid_grey(np.random.default_rng(seed), height, width)


def save_int_model(path, seed=0):
    save_model(to_integer(sharp_model(seed=seed)), path)
    return str(path)


@pytest.fixture
def model_file(tmp_path):
    (tmp_path / "models").mkdir()
    return save_int_model(tmp_path / "models" / "tiny.pt")  # files record the name 'tiny'


@pytest.fixture
def other_model_file(tmp_path):
    (tmp_path / "other").mkdir()
    return save_int_model(tmp_path / "other" / "tiny.pt", seed=1)  # same name, other weights


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(smooth(0)).save(path)
    return path


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def snapshot(path: Path):
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns


def pixels(path_or_bytes) -> np.ndarray:
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with Image.open(src) as im:
        return np.asarray(im.convert("RGB"))


def leftovers(folder: Path):
    return sorted(p.name for p in folder.rglob("*") if ".part" in p.name)


# -- compress / decompress ------------------------------------------------------------------

def test_default_names_round_trip_and_leave_the_input_alone(tmp_path, photo, model_file):
    before = snapshot(photo)
    result = invoke("compress", photo, "--model", model_file, "--tile", 16)
    assert result.exit_code == 0, result.output
    idf = tmp_path / "photo.idf"
    assert idf.exists() and snapshot(photo) == before
    assert describe(idf.read_bytes())["method"] == "flow"
    elsewhere = tmp_path / "b"
    elsewhere.mkdir()
    moved = elsewhere / "photo.idf"
    moved.write_bytes(idf.read_bytes())
    idf_before = snapshot(moved)
    result = invoke("decompress", moved, "--model", model_file)
    assert result.exit_code == 0, result.output
    restored = elsewhere / "photo.png"
    np.testing.assert_array_equal(pixels(restored), smooth(0))
    assert snapshot(moved) == idf_before
    assert leftovers(tmp_path) == []


def test_explicit_output_paths_and_formats(tmp_path, photo, model_file):
    out = tmp_path / "custom name.idf"
    result = invoke("compress", photo, "-o", out, "--model", model_file, "-v")
    assert result.exit_code == 0, result.output
    assert f"-> {out}" in result.stderr and "bpd" in result.stderr
    for name in ("back.png", "back.tiff", "back.bmp"):
        result = invoke("decompress", out, "-o", tmp_path / name, "--model", model_file)
        assert result.exit_code == 0, result.output
        np.testing.assert_array_equal(pixels(tmp_path / name), smooth(0))
    with Image.open(tmp_path / "back.tiff") as im:
        assert im.format == "TIFF"
    assert not (tmp_path / "photo.idf").exists()


def test_existing_output_is_refused_without_force_and_replaced_with_it(tmp_path, photo,
                                                                       model_file):
    target = tmp_path / "photo.idf"
    target.write_bytes(b"precious")
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(target)
    result = invoke("compress", photo, "--model", model_file)
    assert result.exit_code == 1
    assert "photo.idf: already exists (use -f to overwrite)" in result.stderr
    assert snapshot(target) == before
    result = invoke("compress", photo, "--model", model_file, "-f")
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:4] == b"IDFZ"

    restored = tmp_path / "restored.png"
    restored.write_bytes(b"also precious")
    result = invoke("decompress", target, "-o", restored, "--model", model_file)
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert restored.read_bytes() == b"also precious"
    result = invoke("decompress", target, "-o", restored, "--model", model_file, "--force")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(pixels(restored), smooth(0))
    assert leftovers(tmp_path) == []


def test_output_onto_the_input_never_destroys_it(tmp_path, photo, model_file):
    before = snapshot(photo)
    result = invoke("compress", photo, "-o", photo, "-f", "--model", model_file)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert snapshot(photo) == before
    idf = tmp_path / "photo.idf"
    assert invoke("compress", photo, "--model", model_file).exit_code == 0
    before = snapshot(idf)
    result = invoke("decompress", idf, "-o", idf, "-f", "--model", model_file)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert snapshot(idf) == before
    assert leftovers(tmp_path) == []


def test_several_files_at_once(tmp_path, model_file):
    names = ["a.png", "b.png", "c.png"]
    for seed, name in enumerate(names):
        Image.fromarray(smooth(seed, 10 + seed, 12)).save(tmp_path / name)
    result = invoke("compress", *[tmp_path / n for n in names], "--model", model_file)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    out.mkdir()
    for name in names:
        (out / name.replace(".png", ".idf")).write_bytes(
            (tmp_path / name.replace(".png", ".idf")).read_bytes())
    result = invoke("decompress", *sorted(out.iterdir()), "--model", model_file)
    assert result.exit_code == 0, result.output
    for seed, name in enumerate(names):
        np.testing.assert_array_equal(pixels(out / name), smooth(seed, 10 + seed, 12))
    result = invoke("compress", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "x.idf",
                    "--model", model_file)
    assert result.exit_code == 2 and "needs exactly one input" in result.output
    assert not (tmp_path / "x.idf").exists()


def write_tree(root: Path) -> dict[str, np.ndarray]:
    """A folder of small images, one in a subfolder, plus files -r must skip."""
    images = {}
    for seed, rel in enumerate(["a.png", "b.png", "sub/c.png", "sub/d.bmp"]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        images[rel] = smooth(seed, 9 + seed, 11)
        Image.fromarray(images[rel]).save(root / rel)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    Image.fromarray(smooth(9)).save(root / ".hidden" / "skip.png")
    return images


def test_folders_in_parallel_give_the_same_files_as_one_at_a_time(tmp_path, model_file):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    images = write_tree(serial)
    write_tree(parallel)
    for root, jobs in ((serial, 1), (parallel, 2)):
        result = invoke("compress", "-r", root, "-j", jobs, "--model", model_file)
        assert result.exit_code == 0, result.output
    outputs = sorted(p.relative_to(serial) for p in serial.rglob("*.idf"))
    assert [str(p) for p in outputs] == ["a.idf", "b.idf", "sub/c.idf", "sub/d.idf"]
    for rel in outputs:
        assert (serial / rel).read_bytes() == (parallel / rel).read_bytes()
    for rel in images:
        (parallel / rel).unlink()
    result = invoke("decompress", "-r", parallel, "-j", 0, "--model", model_file)
    assert result.exit_code == 0, result.output
    for rel, pixels_ in images.items():
        np.testing.assert_array_equal(pixels(parallel / Path(rel).with_suffix(".png")), pixels_)
    assert not (parallel / ".hidden" / "skip.idf").exists()


def test_a_failing_file_among_many_is_one_line_and_the_others_are_coded(tmp_path, model_file):
    images = write_tree(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    for jobs in (1, 2):
        result = invoke("compress", "-r", tmp_path, "-j", jobs, "-f", "--model", model_file)
        assert result.exit_code == 1
        assert "bad.png: not a readable image" in result.stderr
        assert "1 of 5 files failed" in result.stderr and "Traceback" not in result.output
        assert all((tmp_path / rel).with_suffix(".idf").exists() for rel in images)
        assert not (tmp_path / "bad.idf").exists() and leftovers(tmp_path) == []


def test_shards_split_a_collection_without_overlap_or_gaps(tmp_path, model_file):
    images = write_tree(tmp_path)
    for k in range(3):
        result = invoke("compress", "-r", tmp_path, "--shard", f"{k}/3", "--model", model_file)
        assert result.exit_code == 0, result.output
        coded = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.idf"))
        expected = sorted(str(Path(rel).with_suffix(".idf"))
                          for i, rel in enumerate(sorted(images)) if i % 3 <= k)
        assert coded == expected  # shard k adds files k, k + 3, ... of the sorted list
    for bad in ("3/3", "x", "1/0"):
        result = invoke("compress", "-r", tmp_path, "--shard", bad, "--model", model_file)
        assert result.exit_code == 2 and "--shard" in result.output


def test_inputs_that_would_share_an_output_are_refused_before_anything_is_written(
        tmp_path, model_file):
    """Regression: a.png and a.bmp both default to a.idf; with -f (or -j 2, or in two shards)
    the second overwrote the first, and the run reported success."""
    for seed, name in enumerate(["a.png", "a.bmp", "b.png"]):
        Image.fromarray(smooth(seed, 8, 8)).save(tmp_path / name)
    for args in ([tmp_path / "a.png", tmp_path / "a.bmp", "-f"],
                 [tmp_path / "a.png", tmp_path / "a.bmp", "-j", 2],
                 ["-r", tmp_path, "--shard", "0/2", "-f"]):
        result = invoke("compress", *args, "--model", model_file)
        assert result.exit_code == 2, result.output
        assert "would both be written to" in result.output and "a.idf" in result.output
        assert sorted(p.name for p in tmp_path.glob("*.idf")) == []
    result = invoke("compress", tmp_path / "b.png", tmp_path / "b.png", "-f", "--model",
                    model_file)  # the same file twice: one output, as before
    assert result.exit_code == 0, result.output
    (tmp_path / "b.IDF").write_bytes((tmp_path / "b.idf").read_bytes())
    result = invoke("decompress", "-r", tmp_path, "-f")  # b.idf and b.IDF: b.png
    assert result.exit_code == 2 and "would both be written to" in result.output, result.output
    assert np.array_equal(pixels(tmp_path / "b.png"), smooth(2, 8, 8))


def test_folder_and_stdin_misuse_are_usage_errors(tmp_path, photo, model_file):
    result = invoke("compress", tmp_path, "--model", model_file)
    assert result.exit_code == 1 and "use -r" in result.output
    result = invoke("compress", "-", photo, "--model", model_file)
    assert result.exit_code == 2 and "must be the only input" in result.output
    (tmp_path / "empty").mkdir()
    result = invoke("compress", "-r", tmp_path / "empty", "--model", model_file)
    assert result.exit_code == 2 and "no files" in result.output


def test_stdin_to_stdout_in_process(photo, model_file):
    result = invoke("compress", "-", "--model", model_file, input=photo.read_bytes())
    assert result.exit_code == 0, result.output
    data = result.stdout_bytes
    assert data[:4] == b"IDFZ" and describe(data)["width"] == 24
    result = invoke("decompress", "-", "--model", model_file, input=data)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(pixels(result.stdout_bytes), smooth(0))


def test_info_prints_the_header(tmp_path, photo, model_file):
    invoke("compress", photo, "--model", model_file, "--tile", 16)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (5, 6, 3), np.uint8)).save(
        tmp_path / "noise.png")
    invoke("compress", tmp_path / "noise.png", "--model", model_file)
    result = invoke("info", tmp_path / "photo.idf", tmp_path / "noise.idf")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == str(tmp_path / "photo.idf")
    assert all(line.startswith("  ") and ": " in line for line in lines[1:]
               if line != str(tmp_path / "noise.idf"))
    assert "  method: flow" in lines and "  model: tiny" in lines and "  tile: 16" in lines
    assert "  width: 24" in lines and "  height: 24" in lines and "  mode: RGB" in lines
    assert "  method: raw" in lines and str(tmp_path / "noise.idf") in lines
    bpd = [line for line in lines if line.startswith("  bpd: ")]
    assert len(bpd) == 2 and all(len(b.split(".")[1]) == 4 for b in bpd)
    size = (tmp_path / "photo.idf").stat().st_size
    assert f"  file_bytes: {size}" in lines


def test_decompressing_without_the_model_names_the_model_it_needs(tmp_path, photo, model_file):
    invoke("compress", photo, "--model", model_file)
    photo.unlink()
    result = invoke("decompress", tmp_path / "photo.idf")
    assert result.exit_code == 1
    assert "'tiny'" in result.stderr and "--model" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "photo.png.part").exists()


def test_a_failed_save_leaves_no_partial_output(tmp_path, model_file):
    rgba = Image.fromarray(smooth(0, 8, 8)).convert("RGBA")
    src = tmp_path / "alpha.idf"
    src.write_bytes(compress(rgba, CodingModel(sharp_model(), "tiny")))
    for name in ("out.jpg", "out.unknownext"):
        result = invoke("decompress", src, "-o", tmp_path / name, "--model", model_file)
        assert result.exit_code == 1, result.output
        assert name in result.stderr and "Traceback" not in result.output
        assert not (tmp_path / name).exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("links", [True, False])
def test_an_output_another_run_wrote_meanwhile_is_kept_without_force(tmp_path, monkeypatch,
                                                                      links):
    """The target did not exist when this run checked, but another run wrote it while this
    one was coding: without -f this run fails and that file stays whole (with hard links, by
    an atomic link; without them, by a check just before the rename); with -f it replaces it."""
    from idfzip.files import write_output
    if not links:
        monkeypatch.setattr("os.link", lambda *a: (_ for _ in ()).throw(PermissionError(1, "no")))
    target = tmp_path / "out.idf"

    def other_run_meanwhile(f):
        target.write_bytes(b"the other run's file")
        f.write(b"this run's file")

    with pytest.raises(OSError, match="already exists"):
        write_output(str(target), other_run_meanwhile, force=False)
    assert target.read_bytes() == b"the other run's file"
    assert leftovers(tmp_path) == []
    write_output(str(target), other_run_meanwhile, force=True)
    assert target.read_bytes() == b"this run's file" and leftovers(tmp_path) == []
    target.unlink()
    write_output(str(target), lambda f: f.write(b"new"), force=False)
    assert target.read_bytes() == b"new" and leftovers(tmp_path) == []


# -- errors: one line, exit status, nothing left behind -------------------------------------

ERRORS = [
    # (args, exit code, message)
    (["compress", "{junk}"], 1, "junk.png: not a readable image"),
    (["decompress", "{photo}"], 1, "not an .idf file"),
    (["decompress", "{truncated}"], 1, "truncated .idf file"),
    (["info", "{photo}"], 1, "not an .idf file"),
    (["info", "{truncated}"], 1, "truncated .idf file"),
    (["compress", "{tmp}/missing.png"], 1, "missing.png: no such file"),
    (["decompress", "{tmp}/missing.idf"], 1, "missing.idf: no such file"),
    (["compress", "{tmp}"], 1, "is a directory"),
    (["compress", "{photo}", "--no-such-option"], 2, "--no-such-option"),
    (["compress", "{photo}", "--tile", "4"], 2, "--tile"),
    (["decompress", "{good}", "-o", "{tmp}/restored.png", "--model", "{other}"], 1,
     "was made with model 'tiny'"),
    (["decompress", "{good}", "-o", "{tmp}/restored.png", "--model", "{junk}"], 1,
     "not an idfzip model file"),
    (["decompress", "{good}", "-o", "{tmp}/restored.png", "--model", "{junk}"], 1,
     "this file needs model 'tiny'"),
    (["decompress", "{good}", "-o", "{tmp}/restored.png", "--model", "{junk}"], 1,
     "cannot use --model '{junk}'"),
    (["decompress", "{good}", "-o", "{tmp}/restored.png", "--model", "{other}"], 1,
     "not with --model '{other}'"),
    (["decompress", "{good}", "-o", "{tmp}/restored.png", "--model", "nosuch"], 1,
     "cannot use --model 'nosuch' (unknown model 'nosuch'"),
    (["compress", "{animation}"], 1, "animation.gif: image has 2 frames"),
    (["compress", "{photo}", "-o", "/nonexistent_dir/x.idf"], 1, "cannot write"),
    (["decompress", "{good}", "-o", "/nonexistent_dir/x.png"], 1, "cannot write"),
]


@pytest.fixture
def error_case(tmp_path, photo, model_file, other_model_file):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    good = tmp_path / "good.idf"
    good.write_bytes(compress(Image.open(photo), CodingModel(sharp_model(),
                                                             "tiny"), tile=16))
    truncated = tmp_path / "truncated.idf"
    truncated.write_bytes(good.read_bytes()[:-5])
    animation = tmp_path / "animation.gif"
    frames = [Image.new("RGB", (8, 8), (255 * i, 0, 0)) for i in (0, 1)]
    frames[0].save(animation, save_all=True, append_images=frames[1:])
    names = dict(junk=junk, photo=photo, truncated=truncated, tmp=tmp_path, good=good,
                 other=other_model_file, animation=animation)

    def expand(args):
        args = [a.format(**names) for a in args]
        if args[0] in ("compress", "decompress") and "--model" not in args:
            args += ["--model", model_file]
        return args
    inputs = [junk, photo, good, truncated, animation]
    return expand, inputs


def check_nothing_changed(tmp_path, inputs, before, listing):
    assert [snapshot(p) for p in inputs] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("args, code, message", ERRORS, ids=[" ".join(e[0]) for e in ERRORS])
def test_errors_are_one_line_with_the_right_exit_status(args, code, message, error_case,
                                                        tmp_path, capsys):
    expand, inputs = error_case
    message = expand([message])[0]  # messages may name the test's files too
    before = [snapshot(p) for p in inputs]
    listing = sorted(p.name for p in tmp_path.iterdir())
    result = invoke(*expand(args))
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    check_nothing_changed(tmp_path, inputs, before, listing)
    # the console entry point turns every error into one 'idfzip: ' line on stderr
    with pytest.raises(SystemExit) as exit_info:
        run(expand(args))
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert err.startswith("idfzip: ") and err.count("\n") == 1 and message in err
    check_nothing_changed(tmp_path, inputs, before, listing)


def test_info_names_a_missing_file_once(tmp_path, capsys):
    missing = str(tmp_path / "x.idf")
    with pytest.raises(SystemExit):
        run(["info", missing])
    assert capsys.readouterr().err == f"idfzip: {missing}: no such file\n"


# -- the installed entry point --------------------------------------------------------------

def idfzip_cmd(*args, input=None, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "idfzip", *map(str, args)], input=input,
                          capture_output=True, timeout=120, env=env, cwd=cwd)


def test_entry_point_pipes_through_stdin_and_stdout(photo, model_file):
    done = idfzip_cmd("compress", "-", "--model", model_file, "-q", input=photo.read_bytes())
    assert done.returncode == 0, done.stderr
    assert done.stdout[:4] == b"IDFZ" and done.stderr == b""
    back = idfzip_cmd("decompress", "-", "--model", model_file, input=done.stdout)
    assert back.returncode == 0, back.stderr
    assert back.stdout[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(pixels(back.stdout), smooth(0))


def test_a_reader_that_stops_early_ends_the_output_quietly(photo, model_file):
    """`idfzip decompress x.idf -c | head -c 100`: no traceback, no error line."""
    data = idfzip_cmd("compress", "-", "--model", model_file, "-q", input=photo.read_bytes())
    proc = subprocess.Popen([sys.executable, "-m", "idfzip", "decompress", "-", "--model",
                             str(model_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    _, stderr = proc.communicate(data.stdout, timeout=120)
    assert proc.returncode == 141 and stderr == b""


@pytest.mark.parametrize("args, code, message", [
    (["decompress", "{truncated}"], 1, "truncated .idf file"),
    (["decompress", "{good}", "--bogus"], 2, "--bogus"),
], ids=["truncated", "unknown-option"])
def test_entry_point_errors_are_single_lines(args, code, message, error_case, tmp_path):
    expand, inputs = error_case
    before = [snapshot(p) for p in inputs]
    listing = sorted(p.name for p in tmp_path.iterdir())
    done = idfzip_cmd(*expand(args))
    stderr = done.stderr.decode()
    assert done.returncode == code, stderr
    assert stderr.startswith("idfzip: ") and stderr.count("\n") == 1 and message in stderr
    assert done.stdout == b""
    check_nothing_changed(tmp_path, inputs, before, listing)


# -- the Pillow plugin ----------------------------------------------------------------------

def test_pillow_opens_flow_files_with_the_model_resolved(tmp_path, monkeypatch):
    coder = CodingModel(sharp_model(), "tiny")
    image = Image.fromarray(smooth(3, 20, 27))
    image.info["icc_profile"] = b"fake-icc"
    path = tmp_path / "p.idf"
    path.write_bytes(compress(image, coder, tile=16))
    assert describe(path.read_bytes())["method"] == "flow"
    with Image.open(path) as im:  # the header alone: no model needed yet
        assert (im.format, im.size, im.mode) == ("IDF", (27, 20), "RGB")
    resolved = []  # 'tiny' as a shipped model (a file's name is looked up there only)
    monkeypatch.setitem(idfzip.zoo.SHIPPED, "tiny", idfzip.zoo.ShippedModel("tiny", "-", "-"))
    monkeypatch.setattr(idfzip.api, "coding_model",
                        lambda m, device="cpu", model_id=None: resolved.append(m) or coder)
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), smooth(3, 20, 27))
        assert im.info["icc_profile"] == b"fake-icc"
    assert resolved == ["tiny"]  # the model the file names


def test_pillow_loading_a_flow_file_without_its_model_fails_clearly(tmp_path):
    coder = CodingModel(sharp_model(), "tiny")
    path = tmp_path / "p.idf"
    path.write_bytes(compress(Image.fromarray(smooth(3)), coder, tile=16))
    with Image.open(path) as im:
        with pytest.raises(OSError, match="tiny") as raised:  # what Pillow users catch
            im.load()
    assert isinstance(raised.value.__cause__, ModelError)


@pytest.mark.parametrize("mode", ["P", "L", "1", "RGBA", "I;16"])
def test_pillow_opens_fallback_files_without_a_model(tmp_path, mode):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (7, 9, 3), np.uint8))
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (7, 9)).astype(np.uint16))
    else:
        image = base.convert(mode)
    assert image.mode == mode
    path = tmp_path / "f.idf"
    path.write_bytes(compress(image, CodingModel(sharp_model(), "tiny")))
    with Image.open(path) as im:
        assert (im.format, im.mode, im.size) == ("IDF", mode, (9, 7))
        assert im.tobytes() == image.tobytes()
        if mode == "P":
            assert im.getpalette() == image.getpalette()
            assert im.convert("RGB").tobytes() == image.convert("RGB").tobytes()


def test_pillow_refuses_a_damaged_idf(tmp_path):
    path = tmp_path / "bad.idf"
    data = compress(Image.fromarray(smooth(0, 5, 5)), CodingModel(sharp_model(),
                                                                  "tiny"))
    path.write_bytes(data[:-3])
    with pytest.raises(OSError, match="truncated .idf file"):  # on open: the header is parsed
        Image.open(path)
    damaged = bytearray(data)
    damaged[12] ^= 1  # the stored CRC-32: found on load
    path.write_bytes(bytes(damaged))
    with Image.open(path) as im:
        with pytest.raises(OSError, match="checksum mismatch") as raised:
            im.load()
    assert isinstance(raised.value.__cause__, CodingError)


def test_a_worker_that_dies_is_one_line_not_a_traceback(tmp_path, model_file, monkeypatch):
    from idfzip import jobs

    def died(work, jobs_, workers, threads=None):
        from concurrent.futures.process import BrokenProcessPool
        yield jobs_[0], None, BrokenProcessPool("a child process terminated abruptly")
    monkeypatch.setattr(jobs, "run_jobs", died)
    write_tree(tmp_path)
    result = invoke("compress", "-r", tmp_path, "-j", 2, "--model", model_file)
    assert result.exit_code == 1 and "worker process died" in result.output
    assert "Traceback" not in result.output
