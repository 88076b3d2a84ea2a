"""The names corpus: the first names of the `names` package as next-character windows, split by name."""

from __future__ import annotations

import string

import numpy as np
import pytest

import gradtwin.data
from gradtwin.data.names import ALPHABET, load_names, read_names, synthetic_names, windows
from gradtwin.errors import DataError


def words_of(X: np.ndarray, Y: np.ndarray) -> list[str]:
    """The words whose windows X, Y are: each word runs from a window of end markers to the target '.'."""
    words, current = [], ""
    for row, target in zip(X, Y, strict=True):
        if not np.any(row):
            assert current == "", "a word starts before the previous one ended"
        if target == 0:
            words.append(current)
            current = ""
        else:
            current += ALPHABET[int(target)]
    assert current == "", "the last word has no end marker"
    return words


def test_the_emma_example_gives_five_windows() -> None:
    X, Y = windows(["emma"], 3)
    e, m, a = ALPHABET.index("e"), ALPHABET.index("m"), ALPHABET.index("a")
    assert X.dtype == np.float64 and Y.dtype == np.int64
    assert X.tolist() == [[0, 0, 0], [0, 0, e], [0, e, m], [e, m, m], [m, m, a]]
    assert Y.tolist() == [e, m, m, a, 0]


def test_windows_of_several_words_and_a_longer_context() -> None:
    X, Y = windows(["ab", "c"], 4)
    assert X.shape == (5, 4)
    assert X.tolist() == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 2], [0, 0, 0, 0], [0, 0, 0, 3]]
    assert Y.tolist() == [1, 2, 0, 3, 0]
    assert words_of(X, Y) == ["ab", "c"]


def test_the_vocabulary_is_the_end_marker_then_a_to_z() -> None:
    assert ALPHABET == (".", *string.ascii_lowercase)
    assert len(ALPHABET) == 27


def test_read_names_are_lower_case_letters_unique_and_sorted() -> None:
    names = read_names()
    assert len(names) > 4000
    assert names == sorted(set(names))
    assert all(n and set(n) <= set(string.ascii_lowercase) for n in names)
    assert {"emma", "mary", "james"} <= set(names)


def test_load_names_splits_by_name_and_holds_a_fifth_out() -> None:
    data = load_names()
    assert data.name == "names" and data.test is not None
    assert data.class_names == ALPHABET and data.test.class_names == ALPHABET
    assert data.X.shape[1] == 3 and data.X.dtype == np.float64 and data.Y.dtype == np.int64
    assert np.all(data.X == np.round(data.X)) and 0 <= data.X.min() and data.X.max() <= 26
    train, test = words_of(data.X, data.Y), words_of(data.test.X, data.test.Y)
    assert not set(train) & set(test), "a name has windows on both sides of the split"
    assert sorted(train + test) == read_names()
    assert len(test) == round(0.2 * len(read_names()))


def test_the_split_is_seeded() -> None:
    a, b, c = load_names(seed=0), load_names(seed=0), load_names(seed=1)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.test.X, b.test.X)
    assert set(words_of(a.test.X, a.test.Y)) != set(words_of(c.test.X, c.test.Y))


def test_load_names_with_context_8_and_another_fraction() -> None:
    data = load_names(context=8, test_fraction=0.5)
    assert data.X.shape[1] == 8 and data.test is not None
    assert abs(len(words_of(data.test.X, data.test.Y)) - len(read_names()) / 2) <= 1


def test_synthetic_names_are_small_windows_split_by_name() -> None:
    data = synthetic_names(100, context=2, seed=3)
    assert data.test is not None and data.X.shape[1] == 2 and data.class_names == ALPHABET
    assert data.n + data.test.n >= 100
    train = words_of(data.X, data.Y)
    assert all(w[i] in "aeiou" for w in train for i in range(1, len(w), 2))
    assert np.array_equal(synthetic_names(100, 2, 3).X, data.X)


def test_the_data_package_exports_the_loader_and_windows() -> None:
    assert gradtwin.data.load_names is load_names
    assert gradtwin.data.windows is windows


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: windows(["emma"], 0), "context must be a whole number >= 1"),
        (lambda: windows(["Emma"], 3), "words must be non-empty strings of the letters a..z; got 'Emma'"),
        (lambda: windows(["em.a"], 3), "got 'em.a'"),
        (lambda: windows([""], 3), "got ''"),
        (lambda: windows([], 3), "at least one word"),
        (lambda: load_names(test_fraction=1.0), "test_fraction must be between 0 and 1; got 1.0"),
        (lambda: synthetic_names(3), "synthetic names need n >= 8"),
    ],
)
def test_bad_arguments_give_one_clear_error(call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DataError, match=message.replace(".", r"\.").replace("(", r"\(")) as info:
        call()
    assert "\n" not in str(info.value)
