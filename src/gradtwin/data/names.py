"""A character-level corpus: the first names that ship inside the `names` package, as next-character windows.

The vocabulary is 27 characters: '.' (index 0) marks both the start and the end of a name, and
a..z are 1..26. A name of length m gives m + 1 windows: with context 3, "emma" gives
"..." -> e, "..e" -> m, ".em" -> m, "emm" -> a, "mma" -> '.'. The split is by name, so no
window of a training name is ever in the held-out set. Nothing is downloaded.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from importlib import resources

import numpy as np

from gradtwin.data.dataset import Dataset
from gradtwin.errors import DataError

END = "."
ALPHABET: tuple[str, ...] = (END, *string.ascii_lowercase)  # (27,) index 0 is the start/end marker
INDEX: dict[str, int] = {c: i for i, c in enumerate(ALPHABET)}
NAME_FILES = ("dist.female.first", "dist.male.first")


def read_names() -> list[str]:
    """The `names` package's first names: first column, lower-cased, a..z only, de-duplicated, sorted."""
    root = resources.files("names")
    words: set[str] = set()
    for file in NAME_FILES:
        for line in root.joinpath(file).read_text(encoding="ascii").splitlines():
            fields = line.split()
            if fields and fields[0].isascii() and fields[0].isalpha():
                words.add(fields[0].lower())
    return sorted(words)


def windows(words: Iterable[str], context: int) -> tuple[np.ndarray, np.ndarray]:
    """Next-character windows of `words`: X (n, context) float64 indices, Y (n,) int64 next indices.

    Each word is padded on the left with `context` end markers and followed by one, so a word of
    m characters gives m + 1 rows. The indices in X are whole numbers, exact in float32 too.
    """
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise DataError(f"context must be a whole number >= 1 (characters of history); got {context!r}")
    rows: list[list[int]] = []
    targets: list[int] = []
    for word in words:
        if not isinstance(word, str) or not word or any(c not in INDEX or c == END for c in word):
            raise DataError(f"words must be non-empty strings of the letters a..z; got {word!r}")
        history = [0] * context
        for c in (*word, END):
            rows.append(list(history))
            targets.append(INDEX[c])
            history = [*history[1:], INDEX[c]]
    if not rows:
        raise DataError("words must hold at least one word; got none")
    X = np.asarray(rows, dtype=np.float64).reshape(len(rows), context)  # (n, context)
    Y = np.asarray(targets, dtype=np.int64)  # (n,)
    return X, Y


def load_names(context: int = 3, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The first-names corpus as windows of `context` characters, a seeded `test_fraction` of NAMES held out.

    The names are shuffled with `seed` and the first round(test_fraction * count) of them held out;
    `data.test` holds their windows. X (n, context) holds indices into `class_names` as float64.
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be between 0 and 1; got {test_fraction!r}")
    words = read_names()
    order = np.random.default_rng(seed).permutation(len(words))
    shuffled = [words[i] for i in order]
    n_test = round(test_fraction * len(shuffled))
    if not 1 <= n_test < len(shuffled):
        raise DataError(f"names: {len(shuffled)} names are too few to hold {test_fraction:g} of them out")
    X_test, Y_test = windows(shuffled[:n_test], context)
    X, Y = windows(shuffled[n_test:], context)
    x_name = f"previous {context} characters"
    test = Dataset(X_test, Y_test, "names (held out)", x_name, "next character", class_names=ALPHABET)
    return Dataset(X, Y, "names", x_name, "next character", test=test, class_names=ALPHABET)


def synthetic_names(n: int = 400, context: int = 3, seed: int = 0) -> Dataset:
    """About n windows of made-up names: 1 to 4 syllables of a consonant then a vowel, a quarter of the names held out.

    A learnable toy corpus of this kind (the next letter after a consonant is always a vowel), seeded,
    with the same vocabulary and split by name as `load_names`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 8:
        raise DataError(f"synthetic names need n >= 8 windows (a quarter of the names are held out); got {n!r}")
    rng = np.random.default_rng(seed)
    consonants, vowels = "bdklmnprst", "aeiou"
    words: list[str] = []
    rows = 0
    while rows < n or len(words) < 4:
        word = "".join(rng.choice(list(consonants)) + rng.choice(list(vowels)) for _ in range(rng.integers(1, 5)))
        words.append(word)
        rows += len(word) + 1
    n_test = len(words) // 4
    X_test, Y_test = windows(words[:n_test], context)
    X, Y = windows(words[n_test:], context)
    label = f"synthetic names(n={n}, seed={seed})"
    x_name = f"previous {context} characters"
    test = Dataset(X_test, Y_test, f"{label} (held out)", x_name, "next character", class_names=ALPHABET)
    return Dataset(X, Y, label, x_name, "next character", test=test, class_names=ALPHABET)
