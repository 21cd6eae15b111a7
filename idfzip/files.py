"""Files as a careful command-line tool treats them: '-' for stdin/stdout, outputs named
beside their input, never clobbered without --force, written atomically."""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

from .imageio import ImageReadError


def read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if p.is_dir():
        raise ImageReadError(f"{path}: is a directory")
    if not p.exists():
        raise ImageReadError(f"{path}: no such file")
    return p.read_bytes()


def write_output(path: str, data_writer, force: bool) -> None:
    """Write through a temporary file in the target folder and rename it into place, so an
    interrupted or failed run never leaves a partial file; refuse to overwrite without -f."""
    if path == "-":
        buf = io.BytesIO()
        data_writer(buf)
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if target.exists() and not force:
        raise already_exists(path)
    if target.is_dir():
        raise OSError(f"{path}: is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".part",
                                   dir=target.parent if str(target.parent) else ".")
    except OSError as err:
        raise OSError(f"{path}: cannot write ({err.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            data_writer(f)
        os.chmod(tmp, 0o644)
        if force:
            os.replace(tmp, target)
        else:
            _place_new(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def already_exists(path) -> OSError:
    return OSError(f"{path}: already exists (use -f to overwrite)")


def _place_new(tmp: str, target: Path) -> None:
    """Give the finished ``tmp`` the name ``target`` only if no file has it: a hard link
    fails atomically when the name exists, so another run that wrote ``target`` after the
    first check (two runs started on the same inputs) keeps its file instead of losing it to
    this one. Where hard links are not supported, check and rename."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise already_exists(target) from None
    except OSError:  # no hard links here (some network and FAT file systems)
        if target.exists():
            raise already_exists(target) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def temp_prefix(name: str, pid: int | None = None) -> str:
    """Start of the name of a temporary file for output ``name``, written by process ``pid``
    (this one by default): hidden, and findable by whoever has to clean up after it."""
    return f".{name}.{os.getpid() if pid is None else pid}."


def default_output(path: str, suffix: str) -> str:
    """photo.png -> photo.idf and photo.idf -> photo.png, beside the input."""
    p = Path(path)
    out = p.with_suffix(suffix)
    return str(out if out != p else p.with_name(p.name + suffix))


def refuse_to_clobber(source: str, out: str, force: bool) -> None:
    if out == "-":
        return
    if Path(out).exists() and source != "-" and Path(out).resolve() == Path(source).resolve():
        raise OSError(f"{out}: output would overwrite the input")
    if Path(out).exists() and not force:
        raise already_exists(out)
