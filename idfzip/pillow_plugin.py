"""Pillow plugin: after ``import idfzip``, ``Image.open("photo.idf")`` decodes .idf files.

As Pillow's own plugins do, it raises ``OSError`` (the message says why) for a file it cannot
read: a damaged file on ``open``, and on ``load`` a damaged payload, a model that cannot be
loaded or an image over the pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``); the idfzip error
is the ``OSError``'s ``__cause__``.
"""

from __future__ import annotations

from PIL import Image, ImageFile

from .container import MAGIC, parse


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC


class IdfImageFile(ImageFile.ImageFile):
    """Reads the header on open; decodes the whole image (with the model the file names) on
    ``load()``."""

    format = "IDF"
    format_description = "idfzip lossless (Integer Discrete Flow)"

    def _open(self):
        self._data = self.fp.read()
        try:
            header = parse(self._data)
        except ValueError as err:
            raise OSError(f"cannot read .idf file: {err}") from err
        self._mode = header.mode
        self._size = (header.width, header.height)
        self.tile = []

    def load(self):
        if self._data is not None:
            from .api import decompress
            try:
                image = decompress(self._data)
            except ValueError as err:  # CodingError, ModelError, PixelLimitError
                raise OSError(f"cannot decode .idf file: {err}") from err
            self.im = image.im
            self.info.update(image.info)
            if image.mode in ("P", "PA"):
                self.palette = image.palette
            self._data = None
        return super().load()


Image.register_open(IdfImageFile.format, IdfImageFile, _accept)
Image.register_extension(IdfImageFile.format, ".idf")
