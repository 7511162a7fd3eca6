"""The upstream body's line splitting (chat.upstream.client._split_lines) and SSE decoding, however it is chunked."""

import re

from hypothesis import example, given
from hypothesis import strategies as st

from chat.upstream import sse
from chat.upstream.client import _split_lines

LINE = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=12)
END = st.sampled_from(["\n", "\r\n", "\r"])


def read_all(body: bytes, cuts: list[int]) -> list[bytes]:
    lines, rest, start = [], b"", 0
    for cut in sorted(set(cuts)) + [len(body)]:
        got, rest = _split_lines(rest + body[start:cut])
        lines += got
        start = cut
    if rest:
        lines.append(rest.removesuffix(b"\r"))
    return lines


@given(st.lists(st.tuples(LINE, END), max_size=8), st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_every_terminator_ends_exactly_one_line_wherever_the_chunks_are_cut(pairs, cuts):
    body = "".join(text + end for text, end in pairs).encode()
    cuts = [c for c in cuts if c <= len(body)]
    # The SSE definition read over the whole body at once ("\r" then "\n" is one CRLF).
    expected = re.split(rb"\r\n|\r|\n", body)[:-1]
    assert read_all(body, cuts) == expected


def test_a_crlf_cut_between_its_two_bytes_is_one_line_break():
    assert read_all(b"data: a\r\n\r\ndata: b\r\n", [8, 10]) == [b"data: a", b"", b"data: b"]


def test_a_last_line_without_a_line_break_is_kept():
    assert read_all(b"data: a\n\ndata: [DONE]", [3]) == [b"data: a", b"", b"data: [DONE]"]


# Lines as an SSE stream has them, odd ones included: fields with and without the space,
# comments, an event name, unknown fields, blank lines, a byte-order mark, broken UTF-8.
SSE_LINE = st.one_of(
    st.just(b""),
    st.builds(lambda v: b"data: " + v, st.binary(max_size=6)),
    st.builds(lambda v: b"data:" + v, st.binary(max_size=6)),
    st.sampled_from([b"data", b": ping", b"event: error", b"event:", b"id: 3", b"retry: 9", b"\xef\xbb\xbfdata: x"]),
    st.binary(max_size=8).filter(lambda b: b"\n" not in b and b"\r" not in b),
)


@given(st.lists(st.lists(SSE_LINE, max_size=6), max_size=5))
@example([[b"", b"\xef\xbb\xbfdata: x", b""]])  # a mark is dropped from the first line only
@example([[b"\xef\xbb\xbfdata: x", b"data: y"], [b"", b"data: z", b""]])
def test_feeding_lines_in_batches_dispatches_what_feeding_them_one_by_one_does(batches):
    one_by_one, batched = sse.Decoder(), sse.Decoder()
    expected = [
        m for batch in batches for line in batch if (m := one_by_one.feed(line.decode("utf-8", "replace"))) is not None
    ]
    got = [m for batch in batches for m in batched.feed_lines(batch)]
    assert got == expected
    assert batched.flush() == one_by_one.flush()
