"""Process-wide settings: how torch's CPU threads wait and how many there are, and the torch
release idfzip needs. Importing this module does not import torch: :func:`quiet_thread_waits`
only works before torch is loaded (``idfzip/__init__.py`` calls it first thing).

Why the waits matter. torch runs its CPU kernels on an OpenMP thread team; by default an idle
team thread spins on its core for a while (GNU libgomp: up to 300,000 polls) before it
sleeps, so that the next parallel region starts a few microseconds sooner. One process alone
gains a little. But a network of many small layers is a long series of short parallel regions,
and when two such processes share the cores (``xargs -P``, shell loops with ``&``, several
shards on one machine) each one's spinning threads hold the cores the other one's working
threads need: measured on two cores, a 451x300 photo took 0.2 s alone and 0.9-4.3 s in each
of two processes at once. Passive waiting (threads sleep as soon as a region ends) gives both
processes their share (0.35 s each), at a cost to one process alone (0.24-0.35 s): see README
("Several processes on one machine") for the figures.
"""

from __future__ import annotations

import os
import sys

# The first torch release with the ``fp32_precision`` switches that ``intnet.exact_arithmetic``
# sets (torch.backends.{mkldnn,cuda}.matmul / {mkldnn,cudnn}.conv); 2.8 has only allow_tf32.
MIN_TORCH = (2, 9)

# Environment variables by which a user has already chosen how OpenMP threads wait: libgomp
# (torch's Linux and Windows wheels), and Intel / LLVM OpenMP (conda builds, macOS).
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def quiet_thread_waits(environ=None, modules=None) -> bool:
    """Make idle OpenMP threads sleep at once instead of spinning (``OMP_WAIT_POLICY=PASSIVE``,
    ``KMP_BLOCKTIME=0``), so that several idfzip processes share the cores. The OpenMP runtime
    reads these when torch loads it, so this acts only if torch is not imported yet, and it
    leaves the settings alone when the user made any of them. Returns whether it set them."""
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "torch" in modules or any(name in environ for name in WAIT_SETTINGS):
        return False
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    environ["KMP_BLOCKTIME"] = "0"
    return True


def release(version: str) -> tuple[int, ...]:
    """(major, minor) of a version string such as '2.9.1+cpu' or '2.10.0a0+git1234'."""
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit()) if piece[:1].isdigit() else ""
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _has_precision_switches(torch) -> bool:
    backends = getattr(torch, "backends", None)
    try:
        switches = (backends.mkldnn.conv, backends.mkldnn.matmul, backends.cudnn.conv,
                    backends.cuda.matmul)
        return all(hasattr(switch, "fp32_precision") for switch in switches)
    except AttributeError:
        return False


def require_torch(torch) -> None:
    """Fail with one clear sentence, not an AttributeError deep in a coding run, on a torch
    older than :data:`MIN_TORCH` (or one without the precision switches coding relies on)."""
    version = str(getattr(torch, "__version__", "unknown"))
    if release(version) >= MIN_TORCH and _has_precision_switches(torch):
        return
    need = ".".join(map(str, MIN_TORCH))
    raise ImportError(f"idfzip needs torch>={need} (for its fp32_precision switches, which "
                      f"keep coding bit-exact), but torch {version} is installed; upgrade it: "
                      f"pip install --upgrade 'torch>={need}'")


# -- training precision -----------------------------------------------------------------------

def fastest_precision(device: str, cpuinfo: str | None = None) -> str:
    """The training precision (a key of ``nets.PRECISIONS``) that runs fastest on ``device``:
    bfloat16 on GPUs and on CPUs with bfloat16 units (AVX-512 BF16 or AMX), float32 on the
    rest: on an AVX2-only CPU a bfloat16 step measured 5x slower than float32. ``cpuinfo``:
    the text of /proc/cpuinfo (read when None; float32 where there is none). The precision
    changes the speed, not the recipe: a checkpoint resumes in either."""
    if device != "cpu":
        return "bfloat16"
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return "float32"
    flags = cpuinfo.split()
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


# -- thread counts --------------------------------------------------------------------------

def available_cores() -> int:
    """CPUs this process may run on (its affinity mask, as taskset or a batch system set it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_process(requested: int | None, processes: int, default: int,
                        cores: int) -> int:
    """Torch threads for each of ``processes`` coding processes: ``requested`` (--threads)
    when given, else torch's own default (the physical cores, or OMP_NUM_THREADS) capped at
    the CPUs this process may use, shared out evenly; at least 1."""
    if requested:
        return requested
    return max(1, min(default, cores) // max(1, processes))
