"""idfzip: lossless image compression with Integer Discrete Flows.

``compress(image) -> bytes`` and ``decompress(data) -> PIL.Image`` code images; the flow model
itself (:class:`IntegerDiscreteFlow`) infers latents, generates and samples. Importing the
package registers a Pillow plugin, so ``PIL.Image.open("x.idf")`` works.

Importing idfzip before torch makes torch's idle CPU threads sleep rather than spin, so that
several processes share the cores (see :mod:`idfzip.runtime`); set OMP_WAIT_POLICY yourself
to choose otherwise.
"""

from . import runtime

runtime.quiet_thread_waits()  # before anything imports torch

import torch  # noqa: E402

runtime.require_torch(torch)

from . import pillow_plugin  # noqa: E402,F401  (registers the .idf format with Pillow)
from .api import compress, decompress  # noqa: E402
from .model import FlowConfig, IntegerDiscreteFlow, Latents  # noqa: E402
from .zoo import load_model  # noqa: E402

__all__ = ["FlowConfig", "IntegerDiscreteFlow", "Latents", "compress", "decompress",
           "load_model"]
__version__ = "0.1.0"
