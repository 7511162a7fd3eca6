import pytest

from chat.transport.titles import clean_title


@pytest.mark.parametrize(
    ("raw", "title"),
    [
        ("Sourdough Baking Basics", "Sourdough Baking Basics"),
        ('"Sourdough Baking Basics."', "Sourdough Baking Basics"),
        ("**Sourdough** _Baking_ Basics", "Sourdough Baking Basics"),
        ("## Title: Sourdough Basics\nMore text", "Sourdough Basics"),
        ("标题：做酸面包", "做酸面包"),
        ("", ""),
    ],
)
def test_a_title_is_one_line_of_plain_text(raw, title):
    assert clean_title(raw) == title


def test_a_long_title_is_cut_to_eighty_characters():
    assert len(clean_title("word " * 40)) <= 80
