"""Pillow plugin: after ``import idfzip``, ``Image.open("photo.idf")`` decodes .idf files."""

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
        header = parse(self._data)
        self._mode = header.mode
        self._size = (header.width, header.height)
        self.tile = []

    def load(self):
        if self._data is not None:
            from .api import decompress
            image = decompress(self._data)
            self.im = image.im
            self.info.update(image.info)
            if image.mode in ("P", "PA"):
                self.palette = image.palette
            self._data = None
        return super().load()


Image.register_open(IdfImageFile.format, IdfImageFile, _accept)
Image.register_extension(IdfImageFile.format, ".idf")
