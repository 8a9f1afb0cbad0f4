from __future__ import annotations

import io

from PIL import Image

from tests.unit.cache.corpus import encode, render_lines


def page(text: str = "Invoice No. 2026-0042 Total: $1,234.56", *, font: str = "dejavu-sans",
         size: int = 24, width: int = 640) -> Image.Image:
    return render_lines((text, "Thank you for your business."), font, size, width)


def png(img: Image.Image | None = None) -> bytes:
    return encode(img or page(), "PNG")


def upload(client, data: bytes, *, json: bool = False, raw_type: str | None = None, **kw):
    url = "/ocr?format=json" if json else "/ocr"
    if raw_type:
        return client.post(url, data=data, content_type=raw_type, **kw)
    return client.post(url, data={"image": (io.BytesIO(data), "upload.png")},
                       content_type="multipart/form-data", **kw)
