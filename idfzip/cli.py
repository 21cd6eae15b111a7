"""The ``idfzip`` command line."""

from __future__ import annotations

import functools
import io
import sys
from dataclasses import fields
from pathlib import Path

import click
import numpy as np
import torch

from .data import DataError
from .files import default_output, format_for, read_input, refuse_to_clobber, write_output
from .imageio import ImageReadError, image_grid, read_image, to_pil
from .weights import ModelError
from .zoo import DEFAULT_MODEL, PRESETS

EXPECTED_ERRORS = (DataError, ImageReadError, ModelError, OSError, ValueError)


def friendly_errors(command):
    """Turn expected failures into one line on stderr and exit status 1, never a traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
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


def run(args=None) -> None:
    """Console entry point: like ``main`` but every error, usage errors included, is a single
    ``idfzip: ...`` line on stderr (exit 2 for usage, 1 otherwise)."""
    try:
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
@friendly_errors
def bpd(images, model_name, device):
    """Print the model's bits per dimension, -log2 p(x) / (C H W), of each image."""
    require_files(images)
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
@friendly_errors
def latents(image, output, png_path, model_name, device):
    """Infer the integer latents z = f^-1(x) of IMAGE and save them as .npz."""
    from .visualize import render_latents
    require_files([image])
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
@friendly_errors
def sample(count, height, width, temperature, seed, output, model_name, device):
    """Draw images x = f(z), z ~ p(z), and save them as one grid image."""
    model = open_model(model_name, device)
    height = height or 32
    width = width or height
    images = model.sample(count, height, width, temperature=temperature, seed=seed)
    to_pil(image_grid(images.cpu().numpy())).save(output)
    click.echo(f"{output}: {count} samples of {width}x{height}")


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
@click.option("--seed", type=int, default=None)
@click.option("--eval-every", type=click.IntRange(1), default=None)
@click.option("--checkpoint-every", type=click.IntRange(1), default=None)
@click.option("--init", "init_model", default=None,
              help="Start from the weights of this model (name or path) instead of scratch.")
@click.option("--fake-quant", is_flag=True, default=None,
              help="Quantisation-aware training on the integer export's grids (for fine-tuning "
                   "with --init; the export costs <0.001 bpd even without it).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt if it exists.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for torch (default: all cores).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def train(sources, preset, out_dir, init_model, resume, device, threads, quiet, **overrides):
    """Train a model; resumable with --resume, exports OUT/model.pt for --model."""
    from .train import TrainConfig, train as run_training
    from .zoo import load_model
    if threads:
        torch.set_num_threads(threads)
    names = {f.name for f in fields(TrainConfig)}
    settings = {k: v for k, v in overrides.items() if v is not None and k in names}
    config = TrainConfig(**settings)
    init = load_model(init_model).state_dict() if init_model else None
    out_dir = out_dir or f"runs/{preset}"
    run_training(PRESETS[preset], list(sources), out_dir, config, resume=resume,
                 device=device, progress=not quiet and sys.stderr.isatty(), init_weights=init,
                 log=lambda msg: click.echo(msg, err=True))
    click.echo(f"{out_dir}/model.pt written; use it with --model {out_dir}/model.pt")


# -- compress / decompress / info ------------------------------------------------------------

verbosity = [click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary."),
             click.option("-v", "--verbose", is_flag=True, help="Print sizes and rates.")]
batch_option = click.option("--batch-size", type=click.IntRange(1, 256), default=2,
                            show_default=True, help="Tiles per forward pass.")


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


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output file (one input only; '-' for stdout). Default: INPUT.idf beside "
                   "the input.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@model_option
@device_option
@batch_option
@click.option("--tile", type=click.IntRange(8, 2048), default=512, show_default=True,
              help="Tile side: tiles are coded independently, bounding memory.")
@with_options(verbosity)
@friendly_errors
def compress(inputs, output, force, model_name, device, batch_size, tile, quiet, verbose):
    """Compress images losslessly into .idf files."""
    from PIL import Image

    from .api import compress as compress_image
    from .codec import tile_grid
    if output and len(inputs) > 1:
        raise click.UsageError("-o/--output needs exactly one input")
    device = resolve_device(device)
    for path in inputs:
        raw = read_input(path)
        try:
            image = Image.open(io.BytesIO(raw))
            image.load()
        except Exception as err:
            raise ImageReadError(f"{path}: not a readable image ({type(err).__name__})") from None
        out = output or ("-" if path == "-" else default_output(path, ".idf"))
        refuse_to_clobber(path, out, force)
        with tile_progress(len(tile_grid(image.height, image.width, tile)), path, quiet) as bar:
            try:
                data = compress_image(image, model_name, tile=tile, batch_size=batch_size,
                                      progress=bar.update, device=device)
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None
        write_output(out, lambda f: f.write(data), force)
        if verbose and not quiet:
            dims = image.width * image.height * len(image.getbands())
            click.echo(f"{path} -> {out}: {len(data)} bytes, {8 * len(data) / dims:.4f} bpd",
                       err=True)


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", default=None,
              help="Output image (one input only; '-' for stdout as PNG); its extension picks "
                   "the format. Default: INPUT without .idf, as PNG.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--model", "model_name", default=None,
              help="Model to decode with (default: the one the file names).")
@device_option
@batch_option
@with_options(verbosity)
@friendly_errors
def decompress(inputs, output, force, model_name, device, batch_size, quiet, verbose):
    """Decompress .idf files back to the exact original images."""
    from .api import decompress as decompress_data, tiles_of
    if output and len(inputs) > 1:
        raise click.UsageError("-o/--output needs exactly one input")
    for path in inputs:
        data = read_input(path)
        out = output or ("-" if path == "-" else default_output(path, ".png"))
        refuse_to_clobber(path, out, force)
        try:
            with tile_progress(tiles_of(data), path, quiet) as bar:
                image = decompress_data(data, model_name, batch_size=batch_size,
                                        progress=bar.update, device=resolve_device(device))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        fmt = "PNG" if out == "-" else None

        def save(f, image=image, out=out, fmt=fmt):
            params = {"icc_profile": image.info["icc_profile"]} if "icc_profile" in image.info else {}
            try:
                image.save(f, format=fmt or format_for(out), **params)
            except (KeyError, ValueError, OSError) as err:
                raise OSError(f"{out}: cannot save a {image.mode} image in this format "
                              f"({err})") from None
        write_output(out, save, force)
        if verbose and not quiet:
            click.echo(f"{path} -> {out}: {image.width}x{image.height} {image.mode}", err=True)


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
@friendly_errors
def export(model_path, output, force):
    """Export a trained float model to the integer form used for coding; prints its sha256."""
    from .intnet import to_integer
    from .weights import save_model
    from .zoo import load_model
    model = load_model(model_path)
    refuse_to_clobber(model_path, output, force)
    digest = save_model(model if model.is_integer else to_integer(model), output)
    click.echo(f"{output}: integer model, sha256 {digest}")
