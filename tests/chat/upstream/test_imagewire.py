"""The image endpoints' wire format (chat/upstream/imagewire.py): pure."""

import base64

import pytest

from chat.errors import UpstreamError
from chat.upstream import imagewire


def test_a_dall_e_request_asks_for_base64():
    body = imagewire.generation_body(model="dall-e-3", prompt="a cat", size="1024x1024", quality="hd", n=1)
    assert body == {
        "model": "dall-e-3",
        "prompt": "a cat",
        "n": 1,
        "size": "1024x1024",
        "quality": "hd",
        "response_format": "b64_json",
    }


def test_a_gpt_image_request_leaves_out_the_format_it_refuses():
    body = imagewire.generation_body(model="gpt-image-1", prompt="a cat", size="1024x1024", quality="low", n=2)
    assert "response_format" not in body
    fields = imagewire.form_fields(model="gpt-image-1", prompt="a hat", size="1024x1024", n=1)
    assert "response_format" not in fields


def test_a_variation_has_no_prompt_field():
    fields = imagewire.form_fields(model="dall-e-2", size="512x512", n=3, user="u1")
    assert fields == {"model": "dall-e-2", "n": "3", "size": "512x512", "response_format": "b64_json", "user": "u1"}


def test_images_are_decoded_with_their_revised_prompts_and_capped_at_the_count_asked():
    data = {
        "data": [
            {"b64_json": base64.b64encode(b"one").decode(), "revised_prompt": "a red cat"},
            {"b64_json": base64.b64encode(b"two").decode()},
            {"b64_json": base64.b64encode(b"three").decode()},
        ]
    }
    images = imagewire.images_result(data, most=2)
    assert [(i.data, i.revised_prompt) for i in images] == [(b"one", "a red cat"), (b"two", "")]


def test_an_answer_with_only_a_link_is_refused_and_nothing_is_fetched():
    with pytest.raises(UpstreamError) as caught:
        imagewire.images_result({"data": [{"url": "http://169.254.169.254/latest/meta-data"}]}, most=1)
    assert caught.value.code == "image_url_only"


@pytest.mark.parametrize(
    "data",
    [{}, {"data": []}, {"data": ["x"]}, {"data": [{"b64_json": "not base64!"}]}, {"data": [{"b64_json": 3}]}],
)
def test_an_answer_of_another_shape_is_a_bad_response(data):
    with pytest.raises(UpstreamError) as caught:
        imagewire.images_result(data, most=1)
    assert caught.value.code == "upstream_bad_response"
