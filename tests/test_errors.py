"""seglib.infra.errors: every user error is a SeglibError; a library's error is quoted by its first line, cut at a word."""

import pytest

from seglib.infra.errors import CheckpointError, ConfigError, DataError, SeglibError, first_line


@pytest.mark.parametrize("kind", [DataError, ConfigError, CheckpointError])
def test_each_kind_of_user_error_is_a_seglib_error(kind):
    with pytest.raises(SeglibError, match="the message"):
        raise kind("the message")


def test_first_line_quotes_the_first_line_or_the_type():
    assert first_line(ValueError("  bad value\nTraceback detail")) == "bad value"
    assert first_line(KeyError()) == "KeyError"


def test_first_line_cuts_a_long_line_at_a_word():
    text = first_line(RuntimeError("word " * 100), limit=22)
    assert text == "word word word word ..." and len(text) <= 22 + len(" ...")
