"""Hostile files, decoded in a separate process under a memory cap (RLIMIT_AS): huge headers
with empty, short or garbage streams, streams with data left over, and model names that are
paths (a device, a FIFO, a system file). Each must be refused, with one line, quickly and
within the cap, by the API and by the command line (exit status 1, no output file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from idfzip.container import METHOD_FLOW, Container, parse
from idfzip.limits import min_stream_words
from idfzip.zoo import SHIPPED

REPO = Path(__file__).resolve().parents[1]
MEMORY_CAP = 3 << 30  # address space, for the whole process (torch alone maps ~0.8 GB)
SECONDS = 20  # per file, generous: all but one are refused before any network runs
PHOTO_ID = bytes.fromhex(SHIPPED["photo"].sha256)[:8]


def flow(width: int, height: int, tile: int, streams: list[bytes], name: str = "photo",
         model_id: bytes = PHOTO_ID) -> Container:
    return Container("RGB", METHOD_FLOW, width, height, 0, None, name, model_id, tile, streams)


def garbage(words: int) -> bytes:
    return (b"\x35\x9a\xc1\x5e" * words)[: 4 * words]


def hostile_files(folder: Path) -> dict[str, bytes]:
    """Each file in both format versions: version 1 is still read, so it is as hostile."""
    fifo = folder / "fifo.pt"
    os.mkfifo(fifo)
    trailing = parse((REPO / "tests" / "data" / "format-v1-photo.idf").read_bytes())
    trailing.streams[0] += b"\x01\x00\x00\x00"  # a word after the stream's last symbol
    files = {}
    for name, c in hostile_containers(trailing, fifo).items():
        for version in (1, 2):
            c.version = version
            files[f"{name}-v{version}"] = c.to_bytes()
    return files


def hostile_containers(trailing: Container, fifo: Path) -> dict[str, Container]:
    return {
        # the 288 bytes: 65535x4096 in 2048-tiles, 64 empty streams (30 s, 5.85 GB)
        "huge-empty-streams": flow(65535, 4096, 2048, [b""] * 64),
        # the 36 bytes: one 2048x2048 tile, empty stream (13 s, 3.15 GB)
        "one-big-tile-empty": flow(2048, 2048, 2048, [b""]),
        "one-big-tile-short": flow(2048, 2048, 2048,
                                   [garbage(min_stream_words(3 * 2048 * 2048) - 1)]),
        # long enough to pass the bound: one 1024x1024 tile's networks run, within the cap
        "big-tile-garbage": flow(1024, 1024, 1024, [garbage(min_stream_words(3 << 20) + 9)]),
        "trailing-word": trailing,
        "model-dev-zero": flow(64, 64, 64, [garbage(100)], name="/dev/zero"),
        "model-etc-passwd": flow(64, 64, 64, [garbage(100)], name="/etc/passwd"),
        "model-fifo": flow(64, 64, 64, [garbage(100)], name=str(fifo)),
        "model-relative-pt": flow(64, 64, 64, [garbage(100)], name="../weights/photo.pt"),
    }


CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
import torch
torch.set_num_threads(2)
from PIL import Image
Image.MAX_IMAGE_PIXELS = None  # behind the pixel limit: the stream checks must hold on their own
from idfzip.api import decompress
out = {{}}
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    start = time.perf_counter()
    try:
        decompress(data)
        error = None
    except ValueError as err:  # CodingError and ModelError
        error = str(err)
    except BaseException as err:
        error = "UNEXPECTED " + type(err).__name__ + ": " + str(err)
    out[path] = {{"seconds": time.perf_counter() - start, "error": error}}
out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def capped(args: list[str]) -> subprocess.CompletedProcess:
    """``python args...`` in the repository, under the memory cap, with a hard timeout (a
    decoder that opens a FIFO would block forever)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=240, preexec_fn=limit)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    paths = {}
    for name, data in hostile_files(folder).items():
        paths[name] = folder / f"{name}.idf"
        paths[name].write_bytes(data)
    return folder, paths


def test_hostile_files_are_refused_quickly_within_the_memory_cap(hostile):
    _, paths = hostile
    done = capped(["-c", CHILD.format(cap=MEMORY_CAP), *map(str, paths.values())])
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {"huge-empty-streams": "too short", "one-big-tile-empty": "too short",
                "one-big-tile-short": "too short", "big-tile-garbage": "damaged",
                "trailing-word": "left over", "model-dev-zero": "does not ship",
                "model-etc-passwd": "does not ship", "model-fifo": "does not ship",
                "model-relative-pt": "does not ship"}
    for name, path in paths.items():
        result = results[str(path)]
        assert result["error"] is not None, f"{name}: decoded without error"
        assert not result["error"].startswith("UNEXPECTED"), f"{name}: {result['error']}"
        assert expected[name[:-3]] in result["error"] and "\n" not in result["error"], name
        assert result["seconds"] < SECONDS, (name, result)
    assert results["peak_mb"] < MEMORY_CAP / 2**20


def test_hostile_files_fail_on_the_command_line_with_one_line_each(hostile):
    folder, paths = hostile
    done = capped(["-m", "idfzip", "decompress", "-q", "--max-pixels", "0",
                   *map(str, paths.values())])
    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == len(paths) + 1 and "Traceback" not in done.stderr
    assert lines[-1] == f"idfzip: {len(paths)} of {len(paths)} files failed"
    for name, path in paths.items():
        assert sum(line.startswith(f"idfzip: {path}: ") for line in lines) == 1, name
    assert sorted(p.suffix for p in folder.iterdir()) == [".idf"] * len(paths) + [".pt"]
    assert not list(folder.glob("*.part"))
