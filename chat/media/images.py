"""Images a member uploads or a model returns: checked and normalised with Pillow.

Every image is read here before anything else happens to it: an upload before any provider
call (so a bad one costs nothing and leaves nothing half-done), a model's image before it is
stored. The checks, in the order they run:

- the size in bytes, against PARLEY_IMAGE_UPLOAD_MAX_BYTES (``image_too_large``);
- the header only (``Image.open`` decodes no pixels): a format Parley accepts (PNG, JPEG,
  WebP, GIF), else ``image_invalid``; width × height against PARLEY_IMAGE_MAX_PIXELS, so a
  decompression bomb (a small file that inflates to gigabytes) is refused *before* it is
  decoded (``image_bomb``, T47); Pillow's own bomb guard is mapped to the same code;
- the pixels (``load``): a truncated or corrupt file is ``image_invalid``.

Normalising for ``/images/edits`` and ``/variations`` makes what those endpoints accept: a
PNG with an alpha channel, rotated as its EXIF says, cropped to a square around its centre
where the model requires squares (DALL·E 2), at most PARLEY_IMAGE_EDIT_MAX_SIDE on a side and
under the endpoints' 4 MB. A mask gets the same crop and size, so its transparent area stays
over the part of the picture the member painted.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from chat.errors import ImageRefused

if TYPE_CHECKING:
    from PIL import Image

# Pillow is imported by the functions that read pixels, not with this module: the URLs import
# it at start-up, and a process that is never sent an image does not need Pillow's 3 MB.

FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
# The image endpoints refuse PNGs of 4 MB or more (OpenAI's API reference, images/edits).
ENDPOINT_MAX_BYTES = 4 * 1024 * 1024 - 1
MIN_SIDE = 64


@dataclass(frozen=True)
class Picture:
    data: bytes  # PNG
    width: int
    height: int


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def _invalid() -> ImageRefused:
    return ImageRefused(_("This file is not an image Parley can read (PNG, JPEG, WebP or GIF)."), code="image_invalid")


def _bomb(width: int, height: int) -> ImageRefused:
    return ImageRefused(
        _("This image has too many pixels (%(width)s × %(height)s); the limit is %(limit)s.")
        % {"width": width, "height": height, "limit": f"{settings.PARLEY_IMAGE_MAX_PIXELS:,}"},
        code="image_bomb",
    )


def image_open(data: bytes, *, max_bytes: int | None = None, draft: int | None = None) -> Image.Image:
    """The decoded image in ``data``, after the checks above; raises ImageRefused.

    ``draft``: the side the caller will scale it down to; a JPEG is then decoded at the
    smallest of 1/2, 1/4 or 1/8 of its size that is still at least that big (libjpeg's DCT
    scaling), which is several times faster on a phone's photo and still reads every byte.
    """
    from PIL import Image, UnidentifiedImageError

    limit = settings.PARLEY_IMAGE_UPLOAD_MAX_BYTES if max_bytes is None else max_bytes
    if len(data) > limit:
        raise ImageRefused(
            _("This image is larger than the limit of %(limit)s.") % {"limit": filesizeformat(limit)},
            code="image_too_large",
        )
    if not data:
        raise _invalid()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused(_("This image has too many pixels."), code="image_bomb") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _invalid() from None
    width, height = image.size
    if width * height > settings.PARLEY_IMAGE_MAX_PIXELS:
        raise _bomb(width, height)
    if width < 1 or height < 1:
        raise _invalid()
    try:
        if draft and image.format == "JPEG":
            image.draft("RGB", (draft, draft))
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError):  # truncated, corrupt
        raise _invalid() from None
    return image


def image_info(data: bytes, *, max_bytes: int | None = None) -> ImageInfo:
    image = image_open(data, max_bytes=max_bytes)
    return ImageInfo(format=str(image.format), width=image.width, height=image.height)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    # zlib's fastest level: on a 1024² photo-like picture it took 0.7 s where the default level
    # took 2.6 s and "optimize" 3.4 s, for a file no larger (measured on this project's 2-core CI
    # machine under load; the endpoints take up to 4 MB, which _fit keeps it under).
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _crop_square(image: Image.Image) -> Image.Image:
    side = min(image.size)
    left = (image.width - side) // 2
    top = (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def _fit(image: Image.Image, *, square: bool, max_side: int) -> Image.Image:
    from PIL import Image

    if square and image.width != image.height:
        image = _crop_square(image)
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def image_normalise(data: bytes, *, square: bool, mask: bytes | None = None) -> tuple[Picture, Picture | None]:
    """``data`` (and its ``mask``, if any) as the edit and variation endpoints accept them."""
    from PIL import Image, ImageOps

    side = max(MIN_SIDE, settings.PARLEY_IMAGE_EDIT_MAX_SIDE)
    source = ImageOps.exif_transpose(image_open(data, draft=side))
    # Cropped and scaled before the conversion, so only the small picture is converted.
    fitted = _fit(source, square=square, max_side=side).convert("RGBA")
    png = _png(fitted)
    while len(png) > ENDPOINT_MAX_BYTES and max(fitted.size) > MIN_SIDE:
        side = max(MIN_SIDE, int(max(fitted.size) * 0.75))
        fitted = _fit(fitted, square=square, max_side=side)
        png = _png(fitted)
    picture = Picture(data=png, width=fitted.width, height=fitted.height)
    if mask is None:
        return picture, None
    # Painted over the picture as the browser showed it (rotated, at any scale): the same
    # centred crop, then the picture's size.
    drawn = image_open(mask).convert("RGBA")
    if square and drawn.width != drawn.height:
        drawn = _crop_square(drawn)
    if drawn.size != fitted.size:
        drawn = drawn.resize(fitted.size, Image.Resampling.NEAREST)
    return picture, Picture(data=_png(drawn), width=drawn.width, height=drawn.height)
