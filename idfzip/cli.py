"""The ``idfzip`` command line."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from concurrent.futures.process import BrokenProcessPool
from dataclasses import fields
from pathlib import Path

import click
import numpy as np
import torch

from .data import DataError
from .files import read_input, refuse_to_clobber
from .imageio import ImageReadError, image_grid, read_image, to_pil
from .intnet import ARITHMETICS
from .nets import PRECISIONS
from .runtime import available_cores, fastest_precision, threads_per_process
from .weights import ModelError
from .zoo import DEFAULT_MODEL, PRESETS

EXPECTED_ERRORS = (DataError, ImageReadError, ModelError, OSError, ValueError)


def friendly_errors(command):
    """Turn expected failures into one line on stderr and exit status 1, never a traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:  # whoever read stdout stopped (`| head`): stop quietly too
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # for exit's flush
            sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a tool killed by it
        except EXPECTED_ERRORS as err:
            raise click.ClickException(str(err)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None
    return wrapper


model_option = click.option(
    "--model", "model_name", default=DEFAULT_MODEL, show_default=True,
    help="Name of a shipped model, or path of a .pt model file.")
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where the networks run.")
threads_option = click.option(
    "--threads", type=click.IntRange(1), default=None,
    help="CPU threads for the networks, per process [default: the cores; with -j N, the "
         "cores divided by N]. Output is the same for any count.")


def use_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise click.ClickException("--device cuda: no CUDA device is available")
    return device


def open_model(name: str, device: str):
    from .zoo import load_model
    return load_model(name).to(resolve_device(device))


def load_tensor(path: str, channels: int) -> torch.Tensor:
    return torch.from_numpy(read_image(path, channels))[None]


def require_files(paths) -> None:
    """Fail on the first missing input before any slow work (model loading) starts."""
    for path in paths:
        if not Path(path).is_file():
            raise ImageReadError(f"{path}: " + ("is a directory" if Path(path).is_dir()
                                               else "no such file"))


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def stop_on_sigterm():
    """SIGTERM (kill, timeout, a batch system) unwinds like Ctrl-C, so temporary files are
    removed and worker processes stopped, and exits with status 143 without a message."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread (a library caller): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args=None) -> None:
    """Console entry point: like ``main`` but every error, usage errors included, is a single
    ``idfzip: ...`` line on stderr (exit 2 for usage, 1 otherwise)."""
    try:
        with stop_on_sigterm():
            code = main.main(args=args, prog_name="idfzip", standalone_mode=False)
    except click.ClickException as err:
        click.echo(f"idfzip: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except click.Abort:
        click.echo("idfzip: aborted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="idfzip")
def main():
    """Lossless image compression with Integer Discrete Flows."""


@main.command()
@click.argument("images", nargs=-1, required=True)
@model_option
@device_option
@threads_option
@friendly_errors
def bpd(images, model_name, device, threads):
    """Print the model's bits per dimension, -log2 p(x) / (C H W), of each image."""
    require_files(images)
    use_threads(threads)
    model = open_model(model_name, device)
    total_bits, total_dims = 0.0, 0
    for path in images:
        x = load_tensor(path, model.config.channels)
        bits = float(-model.log_prob(x)[0])
        total_bits, total_dims = total_bits + bits, total_dims + x.numel()
        click.echo(f"{path}\t{bits / x.numel():.4f} bpd")
    if len(images) > 1:
        click.echo(f"total\t{total_bits / total_dims:.4f} bpd")


@main.command()
@click.argument("image")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Where to save the latents (.npz); default IMAGE.latents.npz.")
@click.option("--png", "png_path", type=click.Path(dir_okay=False), default=None,
              help="Also render the latents as a picture for a person to look at.")
@model_option
@device_option
@threads_option
@friendly_errors
def latents(image, output, png_path, model_name, device, threads):
    """Infer the integer latents z = f^-1(x) of IMAGE and save them as .npz."""
    from .visualize import render_latents
    require_files([image])
    use_threads(threads)
    model = open_model(model_name, device)
    lat = model.infer_latent(load_tensor(image, model.config.channels))
    arrays = {f"level{i}": z[0].cpu().numpy().astype(np.int32) for i, z in enumerate(lat.levels)}
    output = output or f"{image}.latents.npz"
    np.savez_compressed(output, height=lat.height, width=lat.width, **arrays)
    click.echo(f"{output}: {len(arrays)} levels, shapes "
               + ", ".join(str(a.shape) for a in arrays.values()))
    if png_path:
        to_pil(render_latents(lat)).save(png_path)
        click.echo(f"{png_path}: latents rendered")


@main.command()
@click.option("-n", "count", type=click.IntRange(1, 1024), default=16, show_default=True)
@click.option("--height", type=click.IntRange(1, 4096), default=None,
              help="Image height [default: 32].")
@click.option("--width", type=click.IntRange(1, 4096), default=None,
              help="Image width [default: the height].")
@click.option("-t", "--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Scale of the prior; below 1 gives smoother samples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="samples.png",
              show_default=True)
@model_option
@device_option
@threads_option
@friendly_errors
def sample(count, height, width, temperature, seed, output, model_name, device, threads):
    """Draw images x = f(z), z ~ p(z), and save them as one grid image."""
    use_threads(threads)
    model = open_model(model_name, device)
    height = height or 32
    width = width or height
    images = model.sample(count, height, width, temperature=temperature, seed=seed)
    to_pil(image_grid(images.cpu().numpy())).save(output)
    click.echo(f"{output}: {count} samples of {width}x{height}")


@main.command()
@friendly_errors
def models():
    """List the shipped models (for --model): architecture, size and weights."""
    from .zoo import shipped_table
    rows = shipped_table()
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in rows[0]}
    for line in [dict(zip(widths, widths)), *rows]:
        click.echo("  ".join(line[k].ljust(w) for k, w in widths.items()).rstrip())


@main.command()
@click.option("--data", "sources", multiple=True, required=True,
              help="Training data: a CIFAR-10 mosaic folder, a folder of images, an .npz with "
                   "an 'x' array, or an image. Repeat to combine.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=DEFAULT_MODEL,
              show_default=True, help="Architecture to train.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for checkpoint.pt and model.pt (default runs/PRESET).")
@click.option("--steps", type=click.IntRange(1), default=None)
@click.option("--batch-size", type=click.IntRange(1), default=None)
@click.option("--crop", type=click.IntRange(2), default=None, help="Training patch side.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--warmup-steps", type=click.IntRange(0), default=None)
@click.option("--decay-per-1000", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Learning-rate factor per 1000 steps [0.97].")
@click.option("--anneal-from", type=click.IntRange(0), default=None,
              help="Step from which the learning rate decays at --anneal-decay-per-1000 "
                   "instead, to finish a run.")
@click.option("--anneal-decay-per-1000", type=click.FloatRange(0, 1, min_open=True),
              default=None, help="Faster decay of the anneal phase [0.85].")
@click.option("--seed", type=int, default=None)
@click.option("--holdout-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=None, help="Share of the images held out for evaluation [0.02].")
@click.option("--eval-every", type=click.IntRange(1), default=None)
@click.option("--checkpoint-every", type=click.IntRange(1), default=None)
@click.option("--init", "init_model", default=None,
              help="Start from the weights of this model (shipped name or path) instead of "
                   "scratch; one with fewer flow steps per level, narrower networks or simpler "
                   "priors is grown to the preset.")
@click.option("--fake-quant", type=click.Choice(list(ARITHMETICS)), is_flag=False,
              flag_value="limb", default=None,
              help="Quantisation-aware training on an integer export's grids, for fine-tuning "
                   "with --init: limb (alone: --fake-quant; the export costs <0.001 bpd even "
                   "without it), w8a8 or int8 (8-bit: calibrates the activations at the start; "
                   "then export with the same --arithmetic).")
@click.option("--calibration-crops", type=click.IntRange(1), default=None,
              help="Training crops whose largest activations set the 8-bit grids' scales, with "
                   "--fake-quant w8a8 or int8 [64]; more cover rarer activations, at a coarser "
                   "grid.")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default=None,
              help="Of the networks' hidden layers [default: bfloat16 on GPUs and on CPUs "
                   "with bfloat16 units (AVX-512 BF16, AMX), where it is faster; else "
                   "float32].")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Evaluate and export a moving average of the weights, with this decay per "
                   "step (e.g. 0.999: about the last 1000 steps); it smooths out the noise of "
                   "small batches [0: off].")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt if it exists.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time budget of this sitting: once the pace is measured, the schedule "
                   "(--steps, --anneal-from, decays) is stretched or shrunk to end inside it; "
                   "training stops at the budget in any case.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for torch (default: all cores).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def train(sources, preset, out_dir, init_model, resume, minutes, device, threads, quiet,
          **overrides):
    """Train a model; resumable with --resume, exports OUT/model.pt for --model.

    Data-parallel on several processes or machines when started by torchrun, e.g.
    torchrun --nproc_per_node 4 -m idfzip train ... (--batch-size is the global batch)."""
    from .train import TrainConfig, train as run_training
    from .growth import grow
    from .intnet import to_float
    from .zoo import load_model
    use_threads(threads)
    names = {f.name for f in fields(TrainConfig)}
    settings = {k: v for k, v in overrides.items() if v is not None and k in names}
    settings.setdefault("precision", fastest_precision(device))
    config = TrainConfig(**settings)
    init = None
    if init_model:
        start = load_model(init_model)
        if start.is_integer:  # a shipped model or an export: train on from its float form
            start = to_float(start)
        if start.config != PRESETS[preset]:  # a smaller trained model: grow it (see growth.py)
            start = grow(start, PRESETS[preset])
        init = start.state_dict()
    out_dir = out_dir or f"runs/{preset}"
    run_training(PRESETS[preset], list(sources), out_dir, config, resume=resume,
                 device=device, progress=not quiet and sys.stderr.isatty(), init_weights=init,
                 log=lambda msg: click.echo(msg, err=True),
                 time_budget=None if minutes is None else 60 * minutes)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for all
        click.echo(f"{out_dir}/model.pt written; use it with --model {out_dir}/model.pt")


# -- compress / decompress / info ------------------------------------------------------------

verbosity = [click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary."),
             click.option("-v", "--verbose", is_flag=True, help="Print sizes and rates.")]
batch_option = click.option("--batch-size", type=click.IntRange(1, 256), default=2,
                            show_default=True,
                            help="Tiles per forward pass (at most 4 Mpixel of tiles).")
max_pixels_option = click.option(
    "--max-pixels", type=click.IntRange(0), default=None, metavar="N",
    help="Refuse images of more than N pixels, before decoding them (0: no limit but the "
         "format's 2^28) [default: Pillow's MAX_IMAGE_PIXELS, 89478485].")


def with_options(options):
    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def tile_progress(total: int, label: str, quiet: bool):
    """A tqdm bar over tiles, shown only on a terminal and for more than one tile."""
    from tqdm import tqdm
    show = not quiet and sys.stderr.isatty() and total > 1
    return tqdm(total=total, desc=label, unit="tile", disable=not show, leave=False)


parallel_options = [
    click.option("-j", "--jobs", type=click.IntRange(0), default=1, show_default=True,
                 help="Files coded at once, each in its own process (0: one per core). The "
                      "cores are shared out: each process gets cores/N threads unless "
                      "--threads says otherwise. Outputs are the same as one at a time."),
    threads_option,
    click.option("-r", "--recursive", is_flag=True,
                 help="Code the files inside folders given as inputs (and their subfolders)."),
    click.option("--shard", default=None, metavar="K/N",
                 help="Code only every N-th input file, starting at the K-th (0-based), of the "
                      "sorted list: N machines or array jobs split a collection this way.")]


def parse_shard(shard: str | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    try:
        index, count = (int(v) for v in shard.split("/"))
    except ValueError:
        raise click.BadParameter(f"{shard!r} is not K/N", param_hint="--shard") from None
    if not 0 <= index < count:
        raise click.BadParameter(f"K must be between 0 and N-1 in {shard!r}",
                                 param_hint="--shard")
    return index, count


def code_files(work, jobs, workers: int, threads: int | None, quiet: bool,
               verbose: bool) -> None:
    """Run coding jobs one at a time (a tile progress bar each) or in ``workers`` processes (a
    file progress bar) of ``threads`` torch threads each (default: the cores shared out); a
    failure is one line and the other files go on; with several files the exit status says
    how many failed."""
    from tqdm import tqdm

    from .jobs import run_jobs
    failed = 0

    def report(job, done, error):
        nonlocal failed
        if error is None:
            if verbose and not quiet:
                click.echo(f"{job.path} -> {done.job.out}: {done.summary}", err=True)
            if done.note and not quiet:
                tqdm.write(f"idfzip: {done.note}", file=sys.stderr)
            return
        if isinstance(error, BrokenProcessPool):
            raise click.ClickException(f"{job.path}: a worker process died (out of memory?); "
                                       "try fewer jobs (-j)")
        if len(jobs) == 1 or not isinstance(error, EXPECTED_ERRORS):
            raise error
        failed += 1
        tqdm.write(f"idfzip: {error}", file=sys.stderr)

    workers = min(workers or available_cores(), len(jobs))
    if workers == 1:
        use_threads(threads)
        for job in jobs:
            with contextlib.ExitStack() as stack:
                def start(total, label=job.path):
                    return stack.enter_context(tile_progress(total, label, quiet)).update
                try:
                    done, error = work(job, start), None
                except EXPECTED_ERRORS as err:
                    done, error = None, err
            report(job, done, error)
    else:
        show = not quiet and sys.stderr.isatty()
        threads = threads_per_process(threads, workers, torch.get_num_threads(),
                                      available_cores())
        with tqdm(total=len(jobs), unit="file", disable=not show, leave=False) as bar, \
                contextlib.closing(run_jobs(work, jobs, workers, threads)) as results:
            for job, done, error in results:  # closing: an interrupt stops the workers at once
                report(job, done, error)
                bar.update()
    if failed:
        raise click.ClickException(f"{failed} of {len(jobs)} files failed")


def refuse_terminal_output(jobs, force: bool, what: str) -> None:
    """Binary data is not written to a terminal (gzip, zstd): it garbles the screen."""
    if not force and any(job.out == "-" for job in jobs) and sys.stdout.isatty():
        raise click.ClickException(f"{what} not written to a terminal; redirect the output "
                                   "or use -f to force")


def refuse_shared_outputs(paths, output, out_suffix) -> None:
    """Two inputs whose default outputs are one file (a.png and a.bmp -> a.idf; x.idf and
    x.IDF -> x.png) would have the second overwrite the first (with -f, or when both are
    coded at once): refused before anything is coded."""
    from .jobs import output_for
    if output:
        return
    seen: dict[Path, str] = {}
    for path in paths:
        if path == "-":
            continue
        out = output_for(path, None, out_suffix)
        key = Path(out).resolve()
        if key in seen and Path(seen[key]).resolve() != Path(path).resolve():
            raise click.UsageError(f"{seen[key]} and {path} would both be written to {out}; "
                                   "code one of them on its own with -o")
        seen[key] = path


def make_jobs(inputs, output, suffixes, out_suffix, recursive, shard, **settings):
    from .jobs import Job, expand_inputs, output_for
    if output and len(inputs) > 1:
        raise click.UsageError("-o/--output needs exactly one input")
    if "-" in inputs and len(inputs) > 1:
        raise click.UsageError("'-' (standard input) must be the only input")
    index, count = parse_shard(shard)
    paths = expand_inputs(inputs, suffixes, recursive)
    refuse_shared_outputs(paths, output, out_suffix)  # across all shards: they share a disk
    if count > 1:
        paths = sorted(paths)[index::count]
    if not paths:
        raise click.UsageError("no files to code" + (" in this shard" if count > 1 else
                                                     " in the folders given"))
    if output and len(paths) > 1:
        raise click.UsageError("-o/--output needs exactly one input")
    return [Job(path, output_for(path, output, out_suffix), **settings) for path in paths]


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output file (one input only; '-' for stdout). Default: INPUT.idf beside "
                   "the input.")
@click.option("-f", "--force", is_flag=True,
              help="Overwrite existing output files; write to stdout even if it is a terminal.")
@model_option
@device_option
@batch_option
@click.option("--tile", type=click.IntRange(8, 2048), default=512, show_default=True,
              help="Tile side: tiles are coded independently, bounding memory.")
@max_pixels_option
@with_options(parallel_options)
@with_options(verbosity)
@friendly_errors
def compress(inputs, output, force, model_name, device, batch_size, tile, max_pixels, jobs,
             threads, recursive, shard, quiet, verbose):
    """Compress images losslessly into .idf files.

    Images that cannot come back exactly are refused: more than 8 bits per colour channel
    (16-bit RGB PNG or TIFF; 16-bit grey is kept), modes other than RGB, RGBA, L, LA, P, 1
    and I;16. JPEG and lossy WebP inputs get a one-line note: their pixels are kept exactly,
    which takes several times their size."""
    from .imageio import IMAGE_SUFFIXES
    from .jobs import compress_file
    work = make_jobs(inputs, output, IMAGE_SUFFIXES, ".idf", recursive, shard, force=force,
                     model=model_name, device=resolve_device(device), batch_size=batch_size,
                     tile=tile, max_pixels=max_pixels)
    refuse_terminal_output(work, force, "compressed data")
    code_files(compress_file, work, jobs, threads, quiet, verbose)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output image (one input only; '-' for stdout as PNG); its extension picks "
                   "the format, written losslessly. Default: INPUT without .idf, as PNG.")
@click.option("-f", "--force", is_flag=True,
              help="Overwrite existing output files; write to stdout even if it is a terminal.")
@click.option("--model", "model_name", default=None,
              help="Model to decode with (default: the one the file names).")
@device_option
@batch_option
@max_pixels_option
@with_options(parallel_options)
@with_options(verbosity)
@friendly_errors
def decompress(inputs, output, force, model_name, device, batch_size, max_pixels, jobs,
               threads, recursive, shard, quiet, verbose):
    """Decompress .idf files back to the exact original images.

    Every format is written losslessly (WebP lossless, GIF unoptimised), read back and
    compared; a format that cannot hold the image exactly (JPEG and AVIF always; WebP for
    modes other than RGB and RGBA; all but PNG and GIF for an image with transparency; all
    but PNG, TIFF and WebP for one with an ICC profile; ...) is refused with the reason, and
    nothing is written. PNG holds every image."""
    from .jobs import decompress_file
    work = make_jobs(inputs, output, (".idf",), ".png", recursive, shard, force=force,
                     model=model_name, device=resolve_device(device), batch_size=batch_size,
                     max_pixels=max_pixels)
    refuse_terminal_output(work, force, "image data")
    code_files(decompress_file, work, jobs, threads, quiet, verbose)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@friendly_errors
def info(inputs):
    """Print the header of .idf files."""
    from .api import describe
    for path in inputs:
        data = read_input(path)
        try:
            fields_ = describe(data)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        click.echo(path)
        for key, value in fields_.items():
            click.echo(f"  {key}: {value:.4f}" if isinstance(value, float)
                       else f"  {key}: {value}")


@main.command()
@click.argument("model_path")
@click.option("-o", "--output", required=True, help="Where to write the integer model.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option("--arithmetic", type=click.Choice(list(ARITHMETICS)), default="limb",
              show_default=True,
              help="w8a8: 8-bit weights and activations, fast on integer units (train with "
                   "--fake-quant w8a8 first); int8: the same with 7-bit activations (earlier "
                   "models); limb: 7-bit limbs in float32, finer grids.")
@friendly_errors
def export(model_path, output, force, arithmetic):
    """Export a trained float model to the integer form used for coding; prints its sha256.

    An int8 model exports to w8a8 too: the same weights, on a twice finer activation grid."""
    from .intnet import arithmetic_of, to_float, to_integer
    from .weights import save_model
    from .zoo import load_model
    model = load_model(model_path)
    if model.is_integer and arithmetic_of(model) != arithmetic:
        if (arithmetic_of(model), arithmetic) != ("int8", "w8a8"):
            raise click.UsageError(f"{model_path} is already an integer model in the "
                                   f"{arithmetic_of(model)} arithmetic; export its float model "
                                   f"(OUT/model.pt of its training run) to {arithmetic}")
        model = to_float(model)
    refuse_to_clobber(model_path, output, force)
    digest = save_model(model if model.is_integer else to_integer(model, arithmetic), output)
    click.echo(f"{output}: integer model, sha256 {digest}")
