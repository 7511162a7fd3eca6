"""Images checked and normalised before any provider call (chat/media/images.py, T47)."""

import io

import pytest
from PIL import Image

from chat.errors import ImageRefused
from chat.media.images import image_info, image_normalise, image_open
from tests.chat.media import image_samples


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_a_png_is_read_with_its_size():
    info = image_info(image_samples.png(120, 80))
    assert (info.format, info.width, info.height) == ("PNG", 120, 80)


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.7 not an image", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", b"GIF89a"],
    ids=["pdf", "svg", "gif-header-only"],
)
def test_a_file_that_is_not_an_image_is_refused_as_invalid(data):
    with pytest.raises(ImageRefused) as caught:
        image_open(data)
    assert caught.value.code == "image_invalid"


def test_an_empty_file_is_refused_as_invalid():
    with pytest.raises(ImageRefused) as caught:
        image_open(b"")
    assert caught.value.code == "image_invalid"


def test_a_truncated_png_is_refused_as_invalid():
    with pytest.raises(ImageRefused) as caught:
        image_open(image_samples.truncated_png())
    assert caught.value.code == "image_invalid"


def test_a_decompression_bomb_is_refused_from_its_header_before_it_is_decoded():
    data = image_samples.bomb()
    assert len(data) < 10_000  # a few kilobytes that claim 2.5 billion pixels
    with pytest.raises(ImageRefused) as caught:
        image_open(data)
    assert caught.value.code == "image_bomb"


def test_an_image_over_the_pixel_limit_is_a_bomb_even_below_pillows_own_limit(settings):
    settings.PARLEY_IMAGE_MAX_PIXELS = 100 * 100
    with pytest.raises(ImageRefused) as caught:
        image_open(image_samples.png(101, 100))
    assert caught.value.code == "image_bomb"
    assert image_info(image_samples.png(100, 100)).width == 100


def test_an_image_larger_than_the_byte_limit_is_refused(settings):
    data = image_samples.png(64, 64)
    settings.PARLEY_IMAGE_UPLOAD_MAX_BYTES = len(data) - 1
    with pytest.raises(ImageRefused) as caught:
        image_open(data)
    assert caught.value.code == "image_too_large"


def test_a_jpeg_becomes_a_square_png_with_alpha_where_squares_are_required():
    picture, mask = image_normalise(image_samples.jpeg(80, 40), square=True)
    assert mask is None
    image = _decode(picture.data)
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (40, 40))
    assert (picture.width, picture.height) == (40, 40)


def test_an_image_keeps_its_shape_where_squares_are_not_required():
    picture, _ = image_normalise(image_samples.jpeg(80, 40), square=False)
    assert _decode(picture.data).size == (80, 40)


def test_a_large_image_is_scaled_down_to_the_edit_side(settings):
    settings.PARLEY_IMAGE_EDIT_MAX_SIDE = 256
    picture, _ = image_normalise(image_samples.png(1000, 600), square=True)
    assert _decode(picture.data).size == (256, 256)


def test_a_mask_gets_the_same_crop_and_size_as_its_picture(settings):
    settings.PARLEY_IMAGE_EDIT_MAX_SIDE = 100
    # 300 × 200, cropped to the middle 200 × 200 (x 50..250), then scaled to 100 × 100. The
    # hole painted at x 150..250 of the original is the right half of the result.
    picture, mask = image_normalise(
        image_samples.png(300, 200), square=True, mask=image_samples.mask(300, 200, (150, 0, 250, 200))
    )
    assert mask is not None
    drawn = _decode(mask.data)
    assert drawn.size == (picture.width, picture.height) == (100, 100)
    assert drawn.getpixel((75, 50))[3] == 0  # the painted area is transparent
    assert drawn.getpixel((25, 50))[3] == 255  # the rest is opaque


def test_a_mask_that_is_not_an_image_is_refused():
    with pytest.raises(ImageRefused) as caught:
        image_normalise(image_samples.png(), square=True, mask=b"not a png")
    assert caught.value.code == "image_invalid"
