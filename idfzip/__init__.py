"""idfzip: lossless image compression with Integer Discrete Flows.

``compress(image) -> bytes`` and ``decompress(data) -> PIL.Image`` code images; the flow model
itself (:class:`IntegerDiscreteFlow`) infers latents, generates and samples. Importing the
package registers a Pillow plugin, so ``PIL.Image.open("x.idf")`` works.
"""

from . import pillow_plugin  # noqa: F401  (registers the .idf format with Pillow)
from .api import compress, decompress
from .model import FlowConfig, IntegerDiscreteFlow, Latents
from .zoo import load_model

__all__ = ["FlowConfig", "IntegerDiscreteFlow", "Latents", "compress", "decompress",
           "load_model"]
__version__ = "0.1.0"
