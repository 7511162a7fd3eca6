"""Base URLs as an admin or an environment variable might get them wrong, for fuzzing (issue 20).

Whatever a provider's base URL is, Parley either uses it or says what is wrong with it: a form
error in the admin, a configuration error from ``setup_providers``; never a crash.
"""

from hypothesis import strategies as st

# Each of these once passed a check and then broke the URL parser or the HTTP client.
MALFORMED = [
    "http://[::1",  # an unclosed IPv6 bracket: urlsplit raises ValueError
    "http://::1]/v1",
    "http://[v1.x]/v1",  # an IPvFuture literal urlsplit allows and the HTTP client does not
    "http://[fe80::zz]/v1",
    "http://a\uff03b/v1",  # NFKC turns the fullwidth # into a URL delimiter: ValueError
    "http://ａｂｃ.com/v1",  # not IDNA
    "http://xn--a.com/v1",  # a punycode label that decodes to nothing valid
    "http://999.1.1.1/v1",  # not an IPv4 address
    "http://a\u00adb.example/v1",  # a soft hyphen
    "http://a\u200bb.example/v1",  # a zero-width space
    "http://api.example/v1\x7f",
    "http://\x80/v1",
    "http://api.example:8o80/v1",
    "http://api.example:-1/v1",
    "https://api.example/" + "v" * 500,  # longer than the provider's base URL column
]

_SCHEMES = st.sampled_from(["http", "https", "HTTP", "ftp", "", "javascript", "ht tp"])
_SEPARATORS = st.sampled_from(["://", ":/", ":", "//", ":///", "://user@", "://:@"])
_HOSTS = st.one_of(
    st.sampled_from(
        [
            "[::1",
            "::1]",
            "[::1]",
            "[v1.x]",
            "[fe80::1%25eth0]",
            "[",
            "]",
            "a@b",
            "a\uff03b",
            "a\uff0fb",
            "ａｂｃ.com",
            "xn--a",
            "xn--mller-kva.de",
            "例子.测试",
            "999.1.1.1",
            "1.2.3.4",
            "a\u00adb",
            "..",
            "-",
            "%zz",
            "localhost",
        ]
    ),
    st.text(max_size=12),
)
_PORTS = st.sampled_from(["", ":", ":0", ":8080", ":65535", ":65536", ":-1", ":8o", ":" + "9" * 30])
_PATHS = st.one_of(
    st.sampled_from(["", "/", "/v1", "/v1?x", "/v1#x", "\\v1", "/%", "/ v1", "/v1\x7f"]), st.text(max_size=10)
)


def base_urls():
    """Any text, and URL-shaped text built from the parts that break parsers."""
    return st.one_of(
        st.text(max_size=40),
        st.builds(lambda *parts: "".join(parts), _SCHEMES, _SEPARATORS, _HOSTS, _PORTS, _PATHS),
        st.sampled_from(MALFORMED),
    )
