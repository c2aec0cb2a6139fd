"""`agree`: Cohen's kappa against hand-computed tables, Fleiss/alpha with three raters, rows
left out by reason, and the ``llmscisci agree`` command on a local group."""

from __future__ import annotations

import doctest
import json
import math
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from llmscisci_cfg.cli.agree import register
from llmscisci_cfg.cli.common import UserErrorGroup
from llmscisci_cfg.data.table import Table, write_table
from llmscisci_cfg.errors import UserError
from llmscisci_cfg.eval import agree as agree_module
from llmscisci_cfg.eval.agree import agree

REPO = Path(__file__).resolve().parents[2]


def table_of(rows: list[dict]) -> Table:
    return Table(Path("t.jsonl"), list(rows[0]), rows)


def rows_from_cells(cells: dict[tuple[int, int], int]) -> tuple[list[int], list[int]]:
    """Two raters' answers with ``cells[(a, b)]`` rows where a said ``a`` and b said ``b``."""
    a, b = [], []
    for (x, y), count in cells.items():
        a += [x] * count
        b += [y] * count
    return a, b


def hand_kappa(tn: int, fp: int, fn: int, tp: int) -> float:
    """Cohen's kappa from a 2x2 table: (po - pe) / (1 - pe)."""
    n = tn + fp + fn + tp
    po = (tn + tp) / n
    yes_a, yes_b = (fn + tp) / n, (fp + tp) / n
    pe = yes_a * yes_b + (1 - yes_a) * (1 - yes_b)
    return (po - pe) / (1 - pe)


def test_module_doctest():
    assert doctest.testmod(agree_module).failed == 0


def test_kappa_matches_hand_computed_tables():
    # category 1: tn 4, fp 1, fn 2, tp 3; category 2: tn 6, fp 2, fn 0, tp 2 (10 rows each)
    a1, b1 = rows_from_cells({(0, 0): 4, (0, 1): 1, (1, 0): 2, (1, 1): 3})
    a2, b2 = rows_from_cells({(0, 0): 6, (0, 1): 2, (1, 0): 0, (1, 1): 2})
    rows = [{"x": [p, q], "y": f"[{r}, {s}]"} for p, q, r, s in zip(a1, a2, b1, b2, strict=True)]
    result = agree(table_of(rows), ["x", "y"], ["code", "data"])
    pair = result.pairs[0]
    k1, k2 = hand_kappa(4, 1, 2, 3), hand_kappa(6, 2, 0, 2)
    assert (round(k1, 6), round(k2, 6)) == (0.4, 0.545455)  # the hand numbers themselves
    assert pair.n == 10 and pair.skipped == {}
    assert pair.confusion == {"code": [[4, 1], [2, 3]], "data": [[6, 2], [0, 2]]}
    assert pair.kappa["code"] == pytest.approx(k1)
    assert pair.kappa["data"] == pytest.approx(k2)
    assert pair.mean_kappa == pytest.approx((k1 + k2) / 2)
    assert pair.agreement_per_category == {"code": pytest.approx(0.7), "data": pytest.approx(0.8)}
    exact = sum([p, q] == [r, s] for p, q, r, s in zip(a1, a2, b1, b2, strict=True)) / 10
    assert pair.agreement == pytest.approx(exact)
    assert result.alpha == {} and result.fleiss == {}


def test_as_json_has_exactly_the_documented_shape():
    rows = [{"a": [1, 0], "b": [1, 0]}, {"a": [0, 1], "b": [1, 1]}]
    out = agree(table_of(rows), ["a", "b"]).as_json()
    assert set(out) == {"n", "kind", "alpha_level", "pairs", "alpha", "fleiss"}
    assert (out["kind"], out["alpha_level"]) == ("multi", "nominal")
    assert set(out["pairs"][0]) == {
        "a", "b", "n", "skipped", "kappa", "weighted_kappa", "mean_kappa", "agreement",
        "agreement_per_category", "confusion",
    }  # fmt: skip
    assert out["pairs"][0]["weighted_kappa"] is None  # levels only
    assert out["n"] == 2 and out["pairs"][0]["confusion"]["1"] == [
        [0, 1],
        [0, 1],
    ]  # a: 1, 0; b: 1, 1
    assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_constant_identical_raters_give_null_kappa_with_a_note():
    rows = [{"a": "[1, 0]", "b": "[1, 0]"}, {"a": "[1, 1]", "b": "[1, 0]"}]
    result = agree(table_of(rows), ["a", "b"], ["always", "sometimes"])
    pair = result.pairs[0]
    assert pair.kappa == {"always": None, "sometimes": 0.0}
    assert pair.agreement_per_category["always"] == 1.0
    assert pair.mean_kappa == 0.0  # the undefined value is left out of the mean
    assert any("'always' is null" in note for note in result.notes)
    assert '"always": null' in json.dumps(result.as_json())
    assert "null" in result.as_text()


def test_three_raters_give_finite_fleiss_and_alpha():
    a = ["[1, 0, 1]", "[0, 1, 0]", "[1, 1, 0]", "[0, 0, 1]", "[1, 0, 0]", "[0, 1, 1]"]
    b = ["[1, 0, 1]", "[0, 1, 0]", "[1, 0, 0]", "[0, 0, 1]", "[1, 0, 1]", "[0, 1, 1]"]
    c = ["[1, 0, 0]", "[0, 1, 0]", "[1, 1, 0]", "[1, 0, 1]", "[1, 0, 0]", "[0, 1, 1]"]
    rows = [{"a": x, "b": y, "c": z} for x, y, z in zip(a, b, c, strict=True)]
    result = agree(table_of(rows), ["a", "b", "c"])
    assert [(p.a, p.b) for p in result.pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert set(result.fleiss) == set(result.alpha) == {"1", "2", "3"}
    for value in [*result.fleiss.values(), *result.alpha.values()]:
        assert value is not None and math.isfinite(value) and -1 <= value < 1
    assert result.complete == 6
    # three raters that agree perfectly: both statistics are exactly 1
    same = agree(table_of([{"a": x, "b": x, "c": x} for x in a]), ["a", "b", "c"])
    assert same.fleiss == same.alpha == {"1": 1.0, "2": 1.0, "3": 1.0}
    assert "fleiss" in result.as_text() and "alpha" in result.as_text()


def test_rows_left_out_are_counted_per_pair_and_reason():
    rows = [
        {"a": "[1, 0]", "b": "1", "c": [1, 0]},
        {"a": None, "b": "2", "c": [0, 1]},  # missing in a
        {"a": "", "b": "1, 2", "c": [1, 1]},  # empty in a
        {"a": "[1, 0]", "b": "7", "c": []},  # invalid in b (no code 7), empty in c
        {"a": "[1, 0, 0]", "b": " ", "c": [1, 0]},  # invalid in a (3 long), empty in b
        {"a": "[0, 1]", "b": "2", "c": float("nan")},  # missing in c
    ]
    result = agree(table_of(rows), ["a", "b", "c"])
    ab, ac, bc = result.pairs
    assert (ab.n, ab.skipped) == (
        2,
        {"a: missing": 1, "a: empty": 1, "b: invalid": 1, "a: invalid": 1},
    )
    assert (ac.n, ac.skipped) == (
        1,
        {"a: missing": 1, "a: empty": 1, "c: empty": 1, "a: invalid": 1, "c: missing": 1},
    )
    assert (bc.n, bc.skipped) == (3, {"b: invalid": 1, "b: empty": 1, "c: missing": 1})
    assert ab.n + sum(ab.skipped.values()) == result.n == 6
    assert result.complete == 1
    assert any("t.jsonl: row 4: unknown category code '7'" in note for note in result.notes)


def test_human_codes_use_the_given_code_map():
    rows = [{"a": "3", "b": "[0, 0, 1]"}, {"a": "1, 3", "b": "[1, 0, 1]"}]
    result = agree(table_of(rows), ["a", "b"], ["x", "y", "z"], {"3": 2, "1": 0})
    assert result.pairs[0].agreement == 1.0


def test_codes_only_need_named_categories():
    rows = [{"a": "1", "b": "2"}]
    with pytest.raises(UserError, match="number of categories is unknown"):
        agree(table_of(rows), ["a", "b"])


def test_unknown_column_lists_the_columns():
    rows = [{"coder_a": "[1, 0]", "coder_b": "[1, 0]"}]
    with pytest.raises(
        UserError,
        match=r"no column 'coderb' \(did you mean 'coder_b'\?\); columns: coder_a, coder_b",
    ):
        agree(table_of(rows), ["coder_a", "coderb"])


# ----------------------------------------------------------------------------- the command


@pytest.fixture
def invoke():
    """``agree`` registered on a fresh group that, like ``llmscisci``, turns UserError into exit 2."""
    group = UserErrorGroup()
    register(group)
    runner = CliRunner()
    return lambda *args: runner.invoke(group, ["agree", *map(str, args)])


@pytest.fixture
def labels_csv(tmp_path) -> Path:
    rows = [
        {"id": 1, "coder_a": "[1, 0, 1, 0, 0]", "coder_b": "1, 3", "model": [1, 0, 1, 0, 0]},
        {"id": 2, "coder_a": "[0, 1, 0, 0, 0]", "coder_b": "2", "model": [0, 1, 0, 0, 0]},
        {"id": 3, "coder_a": "[0, 0, 0, 0, 1]", "coder_b": "", "model": [0, 0, 0, 1, 0]},
        {"id": 4, "coder_a": "[1, 1, 0, 0, 0]", "coder_b": "1", "model": [1, 1, 0, 0, 0]},
    ]
    return write_table(tmp_path / "labels.csv", rows)


def test_cli_json(invoke, labels_csv):
    result = invoke(labels_csv, "coder_a", "coder_b", "model", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert (
        out["n"] == 4 and len(out["pairs"]) == 3 and set(out["fleiss"]) == {"1", "2", "3", "4", "5"}
    )
    assert out["pairs"][0]["skipped"] == {"coder_b: empty": 1}
    assert "note: column 'coder_b': 1 empty" in result.stderr


def test_cli_text_with_task_categories(invoke, labels_csv):
    result = invoke(
        labels_csv, "coder_a", "model", "--task", "builtin:repro_effort", "--aspect", "easy"
    )
    assert result.exit_code == 0, result.output
    assert "coder_a vs model: 4 rows (left out: none)" in result.output
    assert "Availability of Code" in result.output and "mean kappa" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["coder_a", "coder_x"], "no column 'coder_x'"),
        (["coder_a"], "at least two label columns"),
        (
            ["coder_a", "coder_a"],
            "named twice: 'coder_a'; the same column of two tables is named FILE:COLUMN",
        ),
        (
            ["coder_a", "coder_b", "--task", "builtin:repro_effort"],
            "aspects easy, difficult; write {aspect}",
        ),
        (
            ["coder_a", "coder_b", "--categories", "a,b", "--task", "builtin:repro_effort"],
            "not both",
        ),
        (["coder_a", "coder_b", "--categories", "only"], "two or more"),
        (["coder_a", "model", "--categories", "x,y,z"], "none of the 4 labels in column 'coder_a'"),
    ],
)
def test_cli_mistakes_exit_2_without_traceback(invoke, labels_csv, args, expected):
    result = invoke(labels_csv, *args)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output
    if expected.startswith("no column"):
        assert "columns: id, coder_a, coder_b, model" in result.output


def test_cli_garbled_file_exits_2(invoke, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('a,b\n"[1, 0]","[1, 0]"\n"[1, 0]",x,y\n')
    result = invoke(path, "a", "b")
    assert result.exit_code == 2
    assert f"error: {path}:3: 3 fields" in result.output
    assert "Traceback" not in result.output


def test_cli_help(invoke):
    group = click.Group()
    register(group)
    result = CliRunner().invoke(group, ["agree", "--help"])
    assert result.exit_code == 0
    assert "Cohen's kappa" in result.output and "--categories" in result.output


def test_imports_no_ml_library():
    probe = (
        "import sys, llmscisci_cfg.cli.agree, llmscisci_cfg.eval.agree, llmscisci_cfg.data.table\n"
        "print([m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets', 'accelerate',"
        " 'sklearn', 'statsmodels', 'pandas', 'pyarrow') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_cli_accepts_the_columns_marker_of_the_design(invoke, labels_csv):
    """`agree TABLE --columns A B C` (DESIGN.md) and `agree TABLE A B C` are the same call."""
    marked = invoke(labels_csv, "--columns", "coder_a", "coder_b", "model", "--json")
    plain = invoke(labels_csv, "coder_a", "coder_b", "model", "--json")
    assert marked.exit_code == 0, marked.output
    assert marked.output == plain.output


# ----------------------------------------------------------------------------- by answer kind


def _decoded(kind, columns: dict[str, list]):
    from llmscisci_cfg.eval.columns import decode

    return {c: decode(kind, c, cells, str) for c, cells in columns.items()}


def test_single_label_kappa_fleiss_and_alpha_over_the_categories():
    import krippendorff
    import numpy as np
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    from llmscisci_cfg.eval.agree import agree_kind
    from llmscisci_cfg.task.kinds import SingleLabel

    kind = SingleLabel(("background", "method", "result"))
    rng = __import__("random").Random(4)
    truth = [rng.randrange(3) for _ in range(50)]
    cols = {
        c: [kind.categories[t if rng.random() < 0.7 else rng.randrange(3)] for t in truth]
        for c in ("x", "y", "z")
    }
    cols["z"][0] = ""  # an empty answer: left out of z's pairs and of Fleiss' rows
    result = agree_kind(50, kind, _decoded(kind, cols))
    assert result.kind == "single" and result.categories == ["category"]
    index = {c: i for i, c in enumerate(kind.categories)}
    xy = result.pairs[0]
    a, b = [index[v] for v in cols["x"]], [index[v] for v in cols["y"]]
    assert xy.kappa["category"] == pytest.approx(cohen_kappa_score(a, b))
    assert xy.agreement == pytest.approx(np.mean(np.array(a) == np.array(b)))
    assert np.array(xy.confusion["category"]).shape == (3, 3)
    assert result.pairs[1].skipped == {"z: empty": 1}
    rows = np.array([[index[cols[c][i]] for c in "xyz"] for i in range(1, 50)])
    assert result.fleiss["category"] == pytest.approx(
        fleiss_kappa(aggregate_raters(rows, n_cat=3)[0], method="fleiss")
    )
    data = np.array([[index[v] if v else np.nan for v in cols[c]] for c in "xyz"], dtype=float)
    assert result.alpha["category"] == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    )
    text = result.as_text()
    assert "x \\ y" in text and "background" in text and "nominal alpha" in text


def test_dimension_levels_get_weighted_kappa_and_ordinal_alpha():
    import krippendorff
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    from llmscisci_cfg.eval.agree import agree_kind
    from llmscisci_cfg.task.kinds import DimensionLabel

    kind = DimensionLabel(("joy", "fear"), ("low", "medium", "high"))
    levels = ("low", "medium", "high")
    rng = __import__("random").Random(5)
    truth = [[rng.choice([0, 0, 1, 2, 3]) for _ in range(2)] for _ in range(40)]

    def answer(t):
        noisy = [v if rng.random() < 0.7 else rng.randrange(4) for v in t]
        return json.dumps(
            {d: levels[v - 1] for d, v in zip(kind.categories, noisy, strict=True) if v}
        )

    cols = {c: [answer(t) for t in truth] for c in ("x", "y", "z")}
    result = agree_kind(40, kind, _decoded(kind, cols))
    assert result.alpha_level == "ordinal" and result.categories == ["joy", "fear"]
    vals = {c: [kind.decode_gold(v) for v in cells] for c, cells in cols.items()}
    xy = result.pairs[0]
    for k, dim in enumerate(kind.categories):
        a, b = [v[k] for v in vals["x"]], [v[k] for v in vals["y"]]
        assert xy.kappa[dim] == pytest.approx(cohen_kappa_score(a, b, labels=[0, 1, 2, 3]))
        assert xy.weighted_kappa[dim] == pytest.approx(
            cohen_kappa_score(a, b, labels=[0, 1, 2, 3], weights="linear")
        )
        data = np.array([[v[k] for v in vals[c]] for c in "xyz"], dtype=float)
        assert result.alpha[dim] == pytest.approx(
            krippendorff.alpha(
                reliability_data=data, level_of_measurement="ordinal", value_domain=[0, 1, 2, 3]
            )
        )
    assert result.as_json()["pairs"][0]["weighted_kappa"]["joy"] == xy.weighted_kappa["joy"]


def test_cli_task_every_aspect_of_joined_tables(invoke, tmp_path):
    a = [{"doc": str(i), "easy": f"[{i % 2}, 1, 0, 0, 0]", "difficult": "1, 2"} for i in range(6)]
    b = [{"doc": str(i), "easy": f"[{i % 2}, 1, 0, 0, 0]", "difficult": "1"} for i in range(5)]
    pa = write_table(tmp_path / "a.csv", a)
    pb = write_table(tmp_path / "b.jsonl", b)
    result = invoke(pa, pb, "--id", "doc", "--task", "builtin:repro_effort", "--columns",
                    "a:{aspect}", "b:{aspect}", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)["aspects"]
    assert set(out) == {"easy", "difficult"}
    easy, difficult = out["easy"]["pairs"][0], out["difficult"]["pairs"][0]
    assert (easy["n"], easy["skipped"], easy["agreement"]) == (5, {"b:easy: missing": 1}, 1.0)
    assert difficult["agreement"] == 0.0 and out["difficult"]["kind"] == "multi"
    text = invoke(
        pa, pb, "--id", "doc", "--task", "builtin:repro_effort", "a:{aspect}", "b:{aspect}"
    )
    assert "== easy" in text.output and "== difficult" in text.output


def test_cli_alt_test_reads_single_labels_with_the_task(invoke, tmp_path):
    classes = ["background", "method", "result"]
    task = tmp_path / "intent.yaml"
    task.write_text(
        "name: intent\nanswer: single\naspects:\n  intent:\n    text_column: t\n    title: t\n"
        f"    question: q\n    categories: {json.dumps(classes)}\nsystem_prompt: s\n"
        'user_prompt: "{{ text }}"\n'
    )
    rng = __import__("random").Random(1)
    truth = [rng.randrange(3) for _ in range(40)]
    rows = [
        {
            c: classes[t] if rng.random() < 0.9 else classes[rng.randrange(3)]
            for c in ("model", "h1", "h2", "h3")
        }  # fmt: skip
        for t in truth
    ]
    rows[0]["h1"] = "BACKGROUND "  # names are matched case- and space-insensitively
    rows[1]["h2"] = "unknown"
    path = write_table(tmp_path / "t.csv", rows)
    result = invoke(path, "--alt-test", "model", "h1", "h2", "h3", "--task", task, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["alignment"] == "accuracy" and [a["n"] for a in out["annotators"]] == [40, 39, 40]
    assert "note: column 'h2': 1 invalid left out as missing" in result.stderr
