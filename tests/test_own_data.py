"""Your own data: delimiters, several x columns, class labels, parameters in the data's own units."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from gradtwin.cli import main
from gradtwin.data import Dataset, holdout, load_csv, standardize
from gradtwin.data.csv_file import sniff_delimiter
from gradtwin.errors import DataError, UsageError
from gradtwin.models import MODELS, mlp

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

# Reservations against pizzas, whitespace-separated as numpy.loadtxt's default reads it
PIZZA = "Reservations  Pizzas\n13  33\n2  16\n14  32\n23  51\n13  27\n1  16\n18  34\n10  17\n26  29\n3  15\n"
ROWS = [[1.0, 2.0, 3.0], [4.0, 5.0, 7.0], [2.0, 9.0, 1.0], [6.0, 1.0, 4.0], [3.0, 3.0, 9.0]]


def _write(tmp_path: Path, text: str, name: str = "d.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- delimiters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sep", "delimiter"), [(",", ","), (";", ";"), ("\t", "tab"), ("  ", "space"), (" \t ", "space")]
)
@pytest.mark.parametrize("given", [False, True])
def test_every_delimiter_reads_the_same_numbers(tmp_path: Path, sep: str, delimiter: str, given: bool) -> None:
    text = sep.join(["a", "b", "c"]) + "\n\n" + "\n".join(sep.join(f"{v:g}" for v in row) for row in ROWS) + "\n"
    path = _write(tmp_path, text)
    data = load_csv(path, x=["a", "b"], y="c", delimiter=delimiter if given else None)
    np.testing.assert_array_equal(data.X, np.array(ROWS)[:, :2])
    np.testing.assert_array_equal(data.Y, np.array(ROWS)[:, 2])
    assert (data.x_name, data.y_name) == ("a,b", "c")


def test_the_books_whitespace_file_reads(tmp_path: Path) -> None:
    data = load_csv(_write(tmp_path, PIZZA, "pizza.txt"), x="Reservations", y="Pizzas")
    expected = np.loadtxt(tmp_path / "pizza.txt", skiprows=1)
    np.testing.assert_array_equal(data.X, expected[:, 0])
    np.testing.assert_array_equal(data.Y, expected[:, 1])


@pytest.mark.parametrize(
    ("line", "expected"),
    [("a;b,c", ";"), ('"x;y",b', ","), ("1,2", ","), ("a\tb c", "\t"), ("a  b", " "), ("17", " ")],
)
def test_the_sniffing_rule(line: str, expected: str) -> None:
    assert sniff_delimiter(f"\n  \n{line}\n1;2,3\n") == expected


@pytest.mark.parametrize(("sep", "delimiter"), [(",", ","), (";", ";"), ("\t", "tab"), (" ", "space")])
def test_every_error_names_file_line_and_column_for_every_delimiter(tmp_path: Path, sep: str, delimiter: str) -> None:
    def load(rows: list[str], **options: object) -> None:
        load_csv(_write(tmp_path, "\n".join(sep.join(r.split(",")) for r in rows) + "\n"), **options)  # type: ignore[arg-type]

    for given in (delimiter, None):
        with pytest.raises(DataError, match=r"d\.csv:3: y holds 'abc', not a number$"):
            load(["x,y", "1,2", "3,abc"], delimiter=given)
        with pytest.raises(DataError, match=r"d\.csv:3: 1 columns where the first row has 2$"):
            load(["x,y", "1,2", "3"], delimiter=given)
        with pytest.raises(DataError, match=r"d\.csv:2: x is 'nan'; only finite numbers are allowed$"):
            load(["x,y", "nan,2"], delimiter=given)
        with pytest.raises(DataError, match=r"d\.csv: x column 'z' not found; the header has x, y$"):
            load(["x,y", "1,2"], x="z", delimiter=given)
        with pytest.raises(DataError, match=r"d\.csv: y column 5 out of range; rows have 2 columns \(0 to 1\)$"):
            load(["x,y", "1,2"], y=5, delimiter=given)
        with pytest.raises(DataError, match=r"d\.csv:1: 'x' is not a number: a header row where none is expected"):
            load(["x,y", "1,2"], header="no", delimiter=given)
        with pytest.raises(DataError, match=r"d\.csv: the file has a header but no data rows$"):
            load(["x,y"], delimiter=given)
        with pytest.raises(DataError, match=r"d\.csv:3: label holds '0\.5', not a class label"):
            load(["x,label", "1,1", "2,0.5"], y="label", labels=True, delimiter=given)
    if delimiter != "space":  # two delimiters in a row: an empty cell (runs of spaces are one delimiter)
        with pytest.raises(DataError, match=r"d\.csv:2: x holds an empty cell, not a number$"):
            load(["x,y", ",2", "3,4"], delimiter=delimiter)


def test_a_delimiter_that_is_not_known_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"delimiter must be ',', ';', 'tab' or 'space'.*got '\|'$"):
        load_csv(_write(tmp_path, "1|2\n"), delimiter="|")


def test_the_delimiter_option_overrides_the_sniffing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Sniffed, 'a,b c' is comma-separated; as --delimiter space its columns are 'a,b' and 'c'."""
    path = _write(tmp_path, "a,b c\n1 2\n2 4.5\n3 7\n4 8\n")
    assert load_csv(path, x="a,b", y="c", delimiter="space").x_name == "a,b"
    with pytest.raises(DataError, match=r"d\.csv:2: 1 columns where the first row has 2$"):
        load_csv(path)
    code, out, err = _run(capsys, "train", "--data", str(path), "--delimiter", "space", "--x", "a,b", "--y", "c")
    assert code == 0, err
    assert "on " + str(path) in out


# --- several x columns --------------------------------------------------------------------


def _houses(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 10, (30, 3)) * [10, 1, 5] + [40, 1, 0]  # (30, 3) size, rooms, age
    y = X @ [1.5, 9.0, -0.7] + 30 + rng.normal(0, 2, 30)  # (30,)
    rows = "\n".join(",".join(f"{v:.4f}" for v in (*x, t)) for x, t in zip(X, y, strict=True))
    return _write(tmp_path, "size,rooms,age,price\n" + rows + "\n", "houses.csv")


@pytest.mark.parametrize(
    "x_options",
    [
        ["--x", "size", "--x", "rooms", "--x", "age"],
        ["--x", "size,rooms,age"],
        ["--x", "size, rooms ,2"],
        ["--x", "0:2"],
        ["--x", "size:age"],
        ["--x", ":age"],
        [],  # every column but y
    ],
)
def test_the_forms_of_x_name_the_same_columns(
    tmp_path: Path, x_options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _houses(tmp_path)
    code, out, err = _run(
        capsys, "train", "--model", "linear", "--data", str(path), "--y", "price", *x_options, "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    raw = np.loadtxt(path, delimiter=",", skiprows=1)
    expected = load_csv(path, x=[0, 1, 2], y=3)
    np.testing.assert_array_equal(expected.X, raw[:, :3])
    assert len(result["params"]["w"]) == 3
    reference = main(["train", "--model", "linear", "--data", str(path), "--x", "0:2", "--y", "3", "--json"])
    assert reference == 0
    assert json.loads(capsys.readouterr().out)["params"] == result["params"]


def test_a_range_includes_both_ends_and_order_is_kept(tmp_path: Path) -> None:
    path = _houses(tmp_path)
    assert load_csv(path, x="1:2", y=3).X.shape == (30, 2)
    assert load_csv(path, x="rooms:rooms", y=3).X.shape == (30, 1)  # a range stays 2-D
    assert load_csv(path, x="rooms", y=3).X.shape == (30,)  # one column is 1-D, as before
    np.testing.assert_array_equal(load_csv(path, x="rooms:", y=0).X, load_csv(path, x=[1, 2, 3], y=0).X)
    np.testing.assert_array_equal(load_csv(path, x=["age", "size"], y=3).X, load_csv(path, x="2,0", y=3).X)


def test_an_exact_header_name_wins_over_splitting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, '"a,b",a,b,c:d,y\n1,5,9,2,2\n2,6,7,4,4.5\n3,7,1,9,7\n4,8,2,1,8\n')
    np.testing.assert_array_equal(load_csv(path, x="a,b", y="y").X, [1, 2, 3, 4])
    np.testing.assert_array_equal(load_csv(path, x="c:d", y="y").X, [2, 4, 9, 1])
    np.testing.assert_array_equal(load_csv(path, x="a:b", y="y").X, [[5, 9], [6, 7], [7, 1], [8, 2]])
    code, out, err = _run(capsys, "train", "--data", str(path), "--x", "a,b", "--y", "y")
    assert code == 0, err  # linear1d: "a,b" is one column
    assert "on " + str(path) in out


def test_linear_no_longer_keeps_only_the_last_x(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _houses(tmp_path)
    code, out, _ = _run(capsys, "train", "--model", "linear", "--data", str(path), "--x", "size", "--x", "rooms",
                        "--y", "price", "--json")  # fmt: skip
    assert code == 0 and len(json.loads(out)["params"]["w"]) == 2


def test_linear1d_refuses_several_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _houses(tmp_path)
    code, _, err = _run(capsys, "train", "--data", str(path), "--x", "size,rooms,age", "--y", "price")
    assert code == 2
    assert err == "gradtwin: linear1d takes one x column; got 3 (size,rooms,age) from " + str(path) + (
        "; use --model linear for several\n"
    )
    code, out, err = _run(capsys, "train", "--data", str(path), "--y", "price", "--json")
    assert code == 0, err  # no --x: linear1d reads column 0
    assert json.loads(out)["params"]["w"] == pytest.approx(
        json.loads(_json(capsys, "train", "--data", str(path), "--x", "size", "--y", "price"))["params"]["w"]
    )


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main([*argv, "--json"]) == 0
    return capsys.readouterr().out


# --- class labels -------------------------------------------------------------------------


def _labelled(tmp_path: Path, labels: list[str], sep: str = ",") -> Path:
    rng = np.random.default_rng(0)
    k = len(labels)
    rows = []
    for i in range(60):
        c = i % k
        x = rng.normal(3.0 * c, 1.0, 2)  # (2,) class c centred at (3c, 3c)
        rows.append(sep.join([f"{x[0]:.4f}", labels[c], f"{x[1]:.4f}"]))
    return _write(tmp_path, sep.join(["f1", "label", "f2"]) + "\n" + "\n".join(rows) + "\n", "cls.csv")


def test_labels_as_words_and_as_integers(tmp_path: Path) -> None:
    words = load_csv(_labelled(tmp_path, ["setosa", "virginica", "apple"]), x=None, y="label", labels=True)
    assert words.class_names == ("apple", "setosa", "virginica") and words.Y.dtype == np.int64
    assert words.X.shape == (60, 2) and words.x_name == "f1,f2"
    assert list(words.Y[:3]) == [1, 2, 0]
    ints = load_csv(_labelled(tmp_path, ["7", "-1", "3.0"]), x=None, y="label", labels=True)
    assert ints.class_names == ("-1", "3", "7")  # sorted as numbers; 3.0 is the whole number 3
    assert list(ints.Y[:3]) == [2, 0, 1]


@pytest.mark.parametrize(
    ("model", "labels"), [("logistic", ["no", "yes"]), ("softmax", ["2", "5", "9"]), ("mlp", ["a", "b", "c"])]
)
def test_compare_and_train_a_classifier_on_a_label_column(
    tmp_path: Path, model: str, labels: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _labelled(tmp_path, labels, sep=";")
    code, out, err = _run(capsys, "compare", "--model", model, "--data", str(path), "--y", "label",
                          "--iterations", "100")  # fmt: skip
    assert code == 0, err
    assert "held-out accuracy" in out and "training accuracy" in out
    assert "n=45 training rows, 15 held out, f1,f2" in out
    assert (
        f"classes 0..{len(labels) - 1} of label: {', '.join(sorted(labels, key=float if labels[0] == '2' else str))}"
        in out
    )
    scores = json.loads(_json(capsys, "compare", "--model", model, "--data", str(path), "--y", "label",
                              "--iterations", "100"))  # fmt: skip
    assert scores["test_accuracy"]["manual"] == scores["test_accuracy"]["autograd"] > 0.8
    accuracy = re.search(r"held-out accuracy\s+(\S+)%", out)
    assert accuracy is not None and float(accuracy.group(1)) == round(100 * scores["test_accuracy"]["manual"], 2)
    trained = json.loads(_json(capsys, "train", "--model", model, "--data", str(path), "--y", "label"))
    assert trained["test_accuracy"] > 0.8 and trained["units"] == "standardized X"


def test_a_classifier_csv_is_split_and_standardized_as_the_bundled_sets(tmp_path: Path) -> None:
    """The same seeded 25% held out, and X scaled by the training rows' statistics only."""
    from gradtwin.cli.commands import load_data
    from gradtwin.cli.parser import build_parser

    path = _labelled(tmp_path, ["a", "b", "c"])
    args = build_parser().parse_args(["compare", "--model", "softmax", "--data", str(path), "--y", "label"])
    data = load_data(args, MODELS["softmax"])
    raw = load_csv(path, x=None, y="label", labels=True)
    split = holdout(raw)
    assert data.test is not None and split.test is not None
    mean, std = split.X.mean(axis=0), split.X.std(axis=0)
    np.testing.assert_allclose(data.X, (split.X - mean) / std)
    np.testing.assert_allclose(data.test.X, (split.test.X - mean) / std)
    np.testing.assert_array_equal(data.test.Y, split.test.Y)
    assert data.class_names == data.test.class_names == ("a", "b", "c")


def test_one_class_and_float_labels_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = _write(tmp_path, "x,label\n1,cat\n2,cat\n3, cat\n")
    with pytest.raises(DataError, match=r"d\.csv: label holds one class \('cat'\) in all 3 rows; a classifier needs"):
        load_csv(one, y="label", labels=True)
    fraction = _write(tmp_path, "x,label\n1,0\n2,1\n3,0.5\n", "f.csv")
    code, _, err = _run(capsys, "compare", "--model", "logistic", "--data", str(fraction), "--y", "label")
    assert code == 1 and err.startswith(f"gradtwin: {fraction}:4: label holds '0.5', not a class label")
    assert "integer class labels" not in err and len(err.splitlines()) == 1


def test_the_old_refusal_is_not_what_a_proper_label_column_gets(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = _write(tmp_path, "x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(12)))
    code, out, err = _run(capsys, "compare", "--model", "logistic", "--data", str(path), "--x", "x", "--y", "label")
    assert code == 0, err
    assert "integer class labels" not in err and "held-out accuracy" in out


# --- units --------------------------------------------------------------------------------


def _lstsq(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    A = np.column_stack([X, np.ones(len(y))])  # (n, d + 1)
    return np.linalg.lstsq(A, y, rcond=None)[0]  # (d + 1,) w then b


def test_raw_units_equal_least_squares_on_the_raw_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, PIZZA, "pizza.txt")
    raw = np.loadtxt(path, skiprows=1)
    w, b = _lstsq(raw[:, :1], raw[:, 1])
    result = json.loads(_json(capsys, "train", "--data", str(path), "--iterations", "500"))
    assert result["units"] == "standardized X"
    assert result["params"]["w"] != pytest.approx(w, rel=1e-2)  # standardized-X units differ
    assert result["params_in_data_units"]["w"] == pytest.approx(w, rel=1e-6)
    assert result["params_in_data_units"]["b"] == pytest.approx(b, rel=1e-6)
    plain = json.loads(_json(capsys, "train", "--data", str(path), "--no-standardize", "--lr", "0.002",
                             "--iterations", "200000"))  # fmt: skip
    assert plain["units"] == "X in the data's own units"
    assert plain["params_in_data_units"] == plain["params"]
    assert plain["params"]["w"] == pytest.approx(w, rel=1e-6)


def test_raw_units_of_several_columns_by_the_exact_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _houses(tmp_path)
    raw = np.loadtxt(path, delimiter=",", skiprows=1)
    expected = _lstsq(raw[:, :3], raw[:, 3])
    result = json.loads(_json(capsys, "compare", "--model", "linear", "--data", str(path), "--y", "price",
                              "--iterations", "3000"))  # fmt: skip
    for twin in ("manual", "autograd"):
        units = result[twin]["params_in_data_units"]
        np.testing.assert_allclose([*units["w"], units["b"]], expected, rtol=1e-6)
    exact = json.loads(_json(capsys, "train", "--model", "linear", "--engine", "exact", "--iterations", "100000",
                             "--data", str(path), "--y", "price"))  # fmt: skip
    units = exact["params_in_data_units"]
    np.testing.assert_allclose([*units["w"], units["b"]], expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["linear1d", "linear", "logistic", "softmax", "mlp"])
def test_parameters_in_data_units_give_the_same_outputs_on_raw_x(name: str) -> None:
    """predict(params, standardized X) == predict(params_in_data_units, raw X), for every affine first layer."""
    model = mlp(hidden=4) if name == "mlp" else MODELS[name]
    rng = np.random.default_rng(1)
    X = rng.normal(5.0, 3.0, (40, 3)) * [1, 10, 0.1]  # (40, 3) at their own scales
    X = X[:, 0] if model.x_ndim == 1 else X
    Y = (
        rng.normal(size=40)
        if model.task == "regression"
        else (np.arange(40) % 3 if name != "logistic" else np.arange(40) % 2)
    )
    data = standardize(Dataset(X, Y, "raw"))
    params = {k: rng.normal(size=s) for k, s in model.param_shapes(data).items()}
    in_units = model.in_data_units(params, data)
    assert in_units is not None and set(in_units) == set(params)
    got = model.manual.predict(in_units, np.asarray(X, float))
    want = model.manual.predict(params, data.X)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_standardize_keeps_its_statistics_and_composes_them() -> None:
    X = np.array([[1.0, 10.0], [2.0, 30.0], [4.0, 20.0]])  # (3, 2)
    once = standardize(Dataset(X, np.arange(3.0), "s"))
    assert once.x_mean is not None and once.x_scale is not None
    np.testing.assert_allclose(once.x_mean, X.mean(axis=0))
    np.testing.assert_allclose(once.x_scale, X.std(axis=0))
    twice = standardize(
        Dataset(once.X * 2 + 1, once.Y, "s", x_mean=once.x_mean - once.x_scale / 2, x_scale=once.x_scale / 2)
    )
    assert twice.x_mean is not None and twice.x_scale is not None
    np.testing.assert_allclose((X - twice.x_mean) / twice.x_scale, twice.X, atol=1e-12)
    assert Dataset(X, np.arange(3.0), "plain").x_mean is None  # backward compatible: the new fields default to None


def test_the_tables_say_in_which_units_the_parameters_are(capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, "compare", "--iterations", "300")[1]
    assert "w, b: for standardized X; in the data's own units (manual): w = 10.23312787, b = -117.7733666" in out
    out = _run(capsys, "compare", "--no-standardize", "--lr", "1e-3", "--iterations", "5")[1]
    assert "w, b: for X in the data's own units" in out
    out = _run(capsys, "train", "--iterations", "300")[1]
    assert "parameters, for standardized X:" in out and "in the data's own units:" in out
    assert re.search(r"^  w  10\.2331", out, re.M)


# --- the classifier's train summary -------------------------------------------------------


def test_train_mlp_prints_a_summary_not_its_weights(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "train", "--model", "mlp", "--iterations", "20")
    assert code == 0, err
    assert all(len(line) < 200 for line in out.splitlines()), max(out.splitlines(), key=len)
    for expected in ("training accuracy", "held-out accuracy", "stop reason", "iterations", "time / iteration",
                     "--json"):  # fmt: skip
        assert expected in out
    for name, shape in [("W1", "(64, 32)"), ("b1", "(32,)"), ("W2", "(32, 10)"), ("b2", "(10,)")]:
        assert re.search(rf"^  {name}\s+{re.escape(shape)}\s+norm \d", out, re.M), out
    full = json.loads(_json(capsys, "train", "--model", "mlp", "--iterations", "20"))
    assert np.shape(full["params"]["W1"]) == (64, 32) and np.shape(full["params_in_data_units"]["W1"]) == (64, 32)
    norm = re.search(r"^  W1\s+\(64, 32\)\s+norm (\S+)", out, re.M)
    assert norm is not None and float(norm.group(1)) == pytest.approx(np.linalg.norm(full["params"]["W1"]), rel=1e-5)


@pytest.mark.parametrize("model", ["logistic", "softmax"])
def test_every_classifier_summary_has_accuracy_and_no_weights(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(capsys, "train", "--model", model, "--iterations", "5")[1]
    assert "held-out accuracy" in out and "norm" in out
    assert not re.search(r"\[.*,.*\]", out)  # no list of values


# --- the README's examples ----------------------------------------------------------------


def _own_data_commands() -> list[str]:
    start = README.index("### Your own data")
    section = README[start : README.index("\n## ", start)]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert blocks, "the README's 'Your own data' section shows no commands"
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize("command", _own_data_commands())
def test_the_readme_own_data_commands_run_as_written(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    words = command.split()
    assert words[0] == "gradtwin", command
    monkeypatch.chdir(ROOT)
    code, out, err = _run(capsys, *words[1:])
    assert code == 0, err
    assert all(len(line) < 200 for line in out.splitlines())
    if "--json" in words:
        result = json.loads(out)
        assert result["units"] == "standardized X" and result["params_in_data_units"] is not None
        data = load_csv(words[words.index("--data") + 1], x=words[words.index("--x") + 1],
                        y=words[words.index("--y") + 1])  # fmt: skip
        units = result["params_in_data_units"]
        np.testing.assert_allclose([*units["w"], units["b"]], _lstsq(data.X, data.Y), rtol=1e-6)
    elif words[words.index("--model") + 1 if "--model" in words else 0] in ("softmax", "mlp"):
        assert "held-out accuracy" in out and "classes 0..2 of fruit: apple, lemon, orange" in out
    else:
        assert "in the data's own units" in out
