"""Coding many files: one job per file, run in this process or in a pool of worker processes.

Every job reads its input, codes it and writes its output atomically on its own, so jobs
are independent and their outputs are the same whichever worker runs them and in whatever
order (coding is bit-exact for any thread count). Workers are started with ``spawn`` (safe
with torch's thread pools) and split the machine's cores between them; each loads a model
once and keeps it for all the files it codes.
"""

from __future__ import annotations

import contextlib
import glob
import multiprocessing
import os
import pickle
import signal
import time
import traceback
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Callable, Iterator

import torch

from .files import default_output, read_input, refuse_to_clobber, temp_prefix, write_output
from .imageio import (ImageReadError, encode_exact, exif_orientation, lossy_source,
                      open_image, output_format, pixel_limit)

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

    if (job.path != "-" and Path(job.path).suffix.lower() == ".idf"
            and job.out == default_output(job.path, ".idf")):  # gzip's rule for x.gz
        raise OSError(f"{job.path}: already has the .idf suffix -- unchanged")
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
    lossy, notes = lossy_source(image, raw), []
    if lossy and len(data) > len(raw):
        notes.append(f"{job.path} is a lossy {lossy}: its decoded pixels, noise included, are "
                     f"kept exactly, in {len(data) / len(raw):.1f}x its size")
    turn = exif_orientation(image)
    if turn != 1:
        notes.append(f"{job.path} has EXIF orientation {turn}, which is not stored: the "
                     "pixels are kept as the file holds them, so viewers will show the "
                     "decompressed image without that turn or flip")
    return Done(job, len(raw), len(data), dims,
                f"{len(data)} bytes, {8 * len(data) / dims:.4f} bpd",
                "note: " + "; ".join(notes) if notes else None)


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
#
# Interrupts. Ctrl-C reaches every process of the terminal's process group, and a scheduler or
# `kill` may signal the main process alone; either way the main process decides. Workers ignore
# SIGINT; when the main process is interrupted (or fails) it sends SIGTERM to the workers, which
# stop at once (torch returns to Python between layers) and unwind, so that ``write_output``
# removes its temporary file and renames nothing into place. Only after every worker has ended
# does the interrupt go on to the "aborted" message: no output can appear after it. A worker
# that does not end within STOP_GRACE seconds is killed and its temporary file removed for it.
# Workers also get SIGTERM if the main process dies (Linux: PR_SET_PDEATHSIG).

STOP_GRACE = 3.0
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_CAN_MASK = hasattr(signal, "pthread_sigmask")  # not on Windows


class RemoteTraceback(Exception):
    """The worker's traceback, attached as ``__cause__`` of an unexpected error from a job."""

    def __str__(self):
        return self.args[0]


@dataclass
class _Slot:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    job: int | None = None  # index of the job it is coding


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the main process stops us itself
        pass
    if os.getppid() != parent:  # the main process died before prctl
        raise SystemExit(128 + signal.SIGTERM)


def _portable(error: Exception) -> Exception:
    """The error itself if it survives pickling back to the main process, else its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


def _worker(conn: Connection, work, threads: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides about interrupts
    signal.signal(signal.SIGTERM, _terminated)  # unwind: temp files are removed on the way
    _die_with_parent(parent)
    torch.set_num_threads(threads)
    try:
        while (job := conn.recv()) is not None:
            try:
                result = (work(job), None, None)
            except Exception as err:
                result = (None, _portable(err), traceback.format_exc())
            conn.send(result)
    except (EOFError, OSError):  # the main process is gone
        pass


@contextlib.contextmanager
def _deferred_signals():
    """SIGINT and SIGTERM to this process wait (pending) until the block ends: a second Ctrl-C
    cannot cut short the stopping of the workers."""
    if not _CAN_MASK:
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _children_ignore_ctrl_c():
    """Processes started inside the block begin with SIGINT ignored (an ignored signal stays
    ignored across exec, unlike a blocked one), so a Ctrl-C while a worker imports torch is no
    traceback there; this process keeps its own (blocked meanwhile: Linux keeps a blocked
    signal pending even while it is set to be ignored)."""
    with _deferred_signals():
        try:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: signals are not ours to change
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _remove_temp_files(out: str, pid: int) -> None:
    target = Path(out)
    for tmp in target.parent.glob(f"{glob.escape(temp_prefix(target.name, pid))}*.part"):
        tmp.unlink(missing_ok=True)


def _stop(pool: list[_Slot], jobs: list[Job], finished: bool) -> None:
    with _deferred_signals():
        if not finished:
            for slot in pool:
                if slot.process.is_alive():
                    slot.process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for slot in pool:
            slot.process.join(max(0.0, deadline - time.monotonic()))
        for slot in pool:
            if slot.process.is_alive():
                slot.process.kill()
                slot.process.join()
                if slot.job is not None and jobs[slot.job].out != "-":
                    _remove_temp_files(jobs[slot.job].out, slot.process.pid)
            slot.conn.close()


def run_jobs(work: Callable[[Job], Done], jobs: list[Job], workers: int,
             threads: int = 1) -> Iterator[tuple[Job, Done | None, Exception | None]]:
    """Run ``work`` on every job in ``workers`` processes of ``threads`` torch threads each,
    yielding ``(job, done, error)`` as each finishes; a failed job yields its exception (expected
    errors are ValueError or OSError) and the others go on; a worker that dies yields
    BrokenProcessPool for its job. Closing the iterator early (an interrupt, an error in the
    caller) stops the workers at once, leaving no output or temp file of unfinished jobs."""
    context = multiprocessing.get_context("spawn")
    todo = list(range(len(jobs) - 1, -1, -1))  # popped from the end: in order
    pool: list[_Slot] = []
    finished = False

    def assign(slot: _Slot) -> None:
        slot.job = todo.pop() if todo else None
        try:
            slot.conn.send(None if slot.job is None else jobs[slot.job])
        except OSError:  # it died; its sentinel reports that
            pass

    try:
        with _children_ignore_ctrl_c():
            for _ in range(workers):
                here, there = context.Pipe()
                process = context.Process(target=_worker, daemon=True,
                                          args=(there, work, threads, os.getpid()))
                process.start()
                there.close()
                pool.append(_Slot(process, here))
        for slot in pool:
            assign(slot)
        while busy := [slot for slot in pool if slot.job is not None]:
            ready = set(wait([s.conn for s in busy] + [s.process.sentinel for s in busy]))
            for slot in busy:
                if slot.conn not in ready and slot.process.sentinel not in ready:
                    continue
                job = jobs[slot.job]
                try:
                    done, error, trace = slot.conn.recv()
                except (EOFError, OSError):
                    slot.job = None
                    slot.process.join()
                    yield job, None, BrokenProcessPool(
                        f"a worker process died (exit status {slot.process.exitcode})")
                    continue
                if trace:
                    error.__cause__ = RemoteTraceback(trace)
                assign(slot)  # the worker goes on while the caller reports
                yield job, done, error
        for index in reversed(todo):  # every worker died
            yield jobs[index], None, BrokenProcessPool("no worker process is left")
        finished = True
    finally:
        _stop(pool, jobs, finished)
