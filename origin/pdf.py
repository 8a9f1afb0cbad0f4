"""PDF uploads: checked on the origin (cheap: page count and sizes), rendered in the workers.

Pages are rendered with pypdfium2 (PDFium) at OCR_PDF_DPI and recognised one by one. PDFium is
not thread-safe, and the origins serve requests on threads: every call holds one lock.
The result key is derived from the PDF's bytes (not from rendered pixels): the same file gives
the same key everywhere, and no rendering is needed to find an earlier result.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from typing import Iterator

from PIL import Image

from .errors import CorruptImage, EmptyUpload, ImageTooLarge, PayloadTooLarge

logger = logging.getLogger(__name__)

MAGIC = b"%PDF-"
CONTENT_TYPE = "application/pdf"
POINTS_PER_INCH = 72.0
_PDFIUM = threading.Lock()


def is_pdf(data: bytes) -> bool:
    # The header may follow a little junk (PDF 1.7 §7.5.2 lets readers look in the first KiB).
    return MAGIC in data[:1024]


def digest(data: bytes) -> str:
    """The content digest keys are derived from (domain-separated from pixel digests)."""
    return hashlib.sha256(b"ocr-origin/pdf\0" + data).hexdigest()


class TooManyPages(PayloadTooLarge):
    """The PDF has more pages than the limit."""
    status, code = 413, "too_many_pages"


@dataclass(frozen=True)
class PdfInfo:
    pages: int
    sizes: tuple[tuple[int, int], ...]  # rendered pixel size of each page

    @property
    def pixels(self) -> int:
        return sum(w * h for w, h in self.sizes)


def _open(data: bytes):  # -> pypdfium2.PdfDocument (typed loosely: pypdfium2 is imported lazily)
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise CorruptImage(f"the PDF could not be read: {exc}") from exc


def inspect(data: bytes, *, dpi: int, max_pages: int, max_pixels: int) -> PdfInfo:
    """Page count and rendered sizes, or a 4xx: empty, unreadable, too many pages, a page over
    the pixel limit."""
    if not data:
        raise EmptyUpload()
    import pypdfium2 as pdfium

    with _PDFIUM:
        doc = _open(data)
        try:
            return _inspect(doc, dpi=dpi, max_pages=max_pages, max_pixels=max_pixels)
        except pdfium.PdfiumError as exc:  # a page that cannot be loaded: the file's fault (fuzz test)
            raise CorruptImage(f"the PDF could not be read: {exc}") from exc
        finally:
            doc.close()


def _inspect(doc, *, dpi: int, max_pages: int, max_pixels: int) -> PdfInfo:  # doc: pdfium.PdfDocument
    count = len(doc)
    if count == 0:
        raise CorruptImage("the PDF has no pages")
    if count > max_pages:
        raise TooManyPages(f"the PDF has {count} pages, more than the limit of {max_pages}")
    sizes = []
    for i in range(count):
        page = doc[i]
        w_pt, h_pt = page.get_size()
        page.close()
        w, h = round(w_pt * dpi / POINTS_PER_INCH), round(h_pt * dpi / POINTS_PER_INCH)
        if w <= 0 or h <= 0:
            raise CorruptImage(f"page {i + 1} has no area")
        if w * h > max_pixels:
            raise ImageTooLarge(f"page {i + 1} renders to {w}x{h} pixels at {dpi} dpi, more "
                                f"than the limit of {max_pixels}")
        sizes.append((w, h))
    return PdfInfo(count, tuple(sizes))


def render_pages(data: bytes, *, dpi: int) -> Iterator[Image.Image]:
    """Each page as an RGB image at `dpi` (call `inspect` first: it enforces the limits)."""
    with _PDFIUM:
        doc = _open(data)
        try:
            pages = len(doc)
        finally:
            doc.close()
    for i in range(pages):
        with _PDFIUM:  # one page at a time: never hold the lock while the model runs
            doc = _open(data)
            try:
                page = doc[i]
                bitmap = page.render(scale=dpi / POINTS_PER_INCH)
                image = bitmap.to_pil().convert("RGB")
                page.close()
            finally:
                doc.close()
        yield image
