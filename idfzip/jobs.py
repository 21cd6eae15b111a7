"""Coding many files: one job per file, run in this process or in a pool of worker processes.

Every job reads its input, codes it and writes its output atomically on its own, so jobs
are independent and their outputs are the same whichever worker runs them and in whatever
order (coding is bit-exact for any thread count). Workers are started with ``spawn`` (safe
with torch's thread pools) and split the machine's cores between them; each loads a model
once and keeps it for all the files it codes.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from .files import default_output, read_input, refuse_to_clobber, write_output
from .imageio import (ImageReadError, encode_exact, lossy_source, open_image, output_format,
                      pixel_limit)

# Called with a job's number of tiles once it is known; returns the per-batch tile counter.
StartProgress = Callable[[int], Callable[[int], None]]


@dataclass(frozen=True)
class Job:
    """One file to code: input, output ('-' for stdout) and the coding settings."""

    path: str
    out: str
    force: bool
    model: str | None
    device: str
    batch_size: int
    tile: int | None = None  # compress only
    max_pixels: int | None = None  # PIL.Image.MAX_IMAGE_PIXELS for this job (0: none)


@dataclass(frozen=True)
class Done:
    """What a finished job reports: input and output bytes and raw pixel dimensions."""

    job: Job
    in_bytes: int
    out_bytes: int
    dims: int
    summary: str
    note: str | None = None  # one line worth telling even without -v


def _counter(start: StartProgress | None, total: int):
    return start(total) if start else None


def compress_file(job: Job, start_progress: StartProgress | None = None) -> Done:
    with pixel_limit(job.max_pixels):
        return _compress_file(job, start_progress)


def _compress_file(job: Job, start_progress: StartProgress | None) -> Done:
    from .api import compress
    from .codec import tile_grid

    raw = read_input(job.path)
    image = open_image(raw, job.path)  # pixel limit and source bit depth checked first
    refuse_to_clobber(job.path, job.out, job.force)
    progress = _counter(start_progress, len(tile_grid(image.height, image.width, job.tile)))
    try:
        data = compress(image, job.model, tile=job.tile, batch_size=job.batch_size,
                        progress=progress, device=job.device)
    except ValueError as err:
        raise ValueError(f"{job.path}: {err}") from None
    write_output(job.out, lambda f: f.write(data), job.force)
    dims = image.width * image.height * len(image.getbands())
    lossy, note = lossy_source(image, raw), None
    if lossy and len(data) > len(raw):
        note = (f"note: {job.path} is a lossy {lossy}: its decoded pixels, noise included, are "
                f"kept exactly, in {len(data) / len(raw):.1f}x its size")
    return Done(job, len(raw), len(data), dims,
                f"{len(data)} bytes, {8 * len(data) / dims:.4f} bpd", note)


def decompress_file(job: Job, start_progress: StartProgress | None = None) -> Done:
    with pixel_limit(job.max_pixels):
        return _decompress_file(job, start_progress)


def _decompress_file(job: Job, start_progress: StartProgress | None) -> Done:
    from .api import decompress, tiles_of

    data = read_input(job.path)
    refuse_to_clobber(job.path, job.out, job.force)
    fmt = "PNG" if job.out == "-" else output_format(job.out)  # lossy formats: refused here
    try:
        progress = _counter(start_progress, tiles_of(data))
        image = decompress(data, job.model, batch_size=job.batch_size, progress=progress,
                           device=job.device)
    except ValueError as err:
        raise ValueError(f"{job.path}: {err}") from None
    encoded = encode_exact(image, fmt, job.out)  # read back and compared, or refused
    write_output(job.out, lambda f: f.write(encoded), job.force)
    dims = image.width * image.height * len(image.getbands())
    return Done(job, len(data), len(encoded), dims,
                f"{image.width}x{image.height} {image.mode}")


# -- inputs ---------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".bmp", ".ppm", ".pgm", ".pnm", ".pbm", ".tif", ".tiff", ".webp",
                  ".gif", ".tga", ".jpg", ".jpeg")


def expand_inputs(paths, suffixes: tuple[str, ...], recursive: bool) -> list[str]:
    """Inputs as given, with each folder (only with ``recursive``) replaced by the files under
    it whose suffix is one of ``suffixes``, sorted; hidden files and folders are skipped."""
    files: list[str] = []
    for path in paths:
        p = Path(path)
        if path != "-" and p.is_dir():
            if not recursive:
                raise ImageReadError(f"{path}: is a directory (use -r to code the files in it)")
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and f.suffix.lower() in suffixes
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            files += [str(f) for f in found]
        else:
            files.append(path)
    return files


def output_for(path: str, output: str | None, suffix: str) -> str:
    return output or ("-" if path == "-" else default_output(path, suffix))


# -- running --------------------------------------------------------------------------------

def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _start_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_jobs(work: Callable[[Job], Done], jobs: list[Job],
             workers: int) -> Iterator[tuple[Job, Done | None, Exception | None]]:
    """Run ``work`` on every job in ``workers`` processes, yielding ``(job, done, error)`` as
    each finishes; a failed job yields its exception (expected errors are ValueError or
    OSError) and the others go on."""
    threads = max(1, available_cores() // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(work, job): job for job in jobs}
        try:
            for future in as_completed(futures):
                error = future.exception()
                yield futures[future], (None if error else future.result()), error
        except BaseException:
            for future in futures:
                future.cancel()
            raise
