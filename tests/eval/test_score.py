"""`llmscisci score`: every answer kind against scikit-learn, pairs on the rows both answered,
joined tables and every aspect at once, the command's JSON and mistakes, and the real data in
../shared/data (skipped when absent)."""

from __future__ import annotations

import ast
import csv
import doctest
import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import binomtest
from sklearn import metrics as skm

from llmscisci_cfg.cli import main
from llmscisci_cfg.data.table import Table, write_table
from llmscisci_cfg.eval import score as score_module
from llmscisci_cfg.eval.columns import join
from llmscisci_cfg.eval.score import score
from llmscisci_cfg.task.kinds import DimensionLabel, MultiLabel, SingleLabel

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
CLASSES = ("background information", "method", "results comparison", "future work")
SINGLE = {"intent": SingleLabel(CLASSES)}
TASK = """name: {name}
answer: {answer}
{levels}aspects:
{aspects}system_prompt: Answer.
user_prompt: "{{{{ text }}}}"
"""


def task_file(path: Path, answer: str, aspects: dict[str, list[str]], levels=None) -> Path:
    """A small task YAML (the shipped citation and flourishing tasks are another engineer's)."""
    body = "".join(
        f"  {a}:\n    text_column: text\n    title: {a}\n    question: Which?\n"
        f"    categories: {json.dumps(cats)}\n"
        for a, cats in aspects.items()
    )
    lv = f"levels: {json.dumps(levels)}\n" if levels else ""
    path.write_text(TASK.format(name=path.stem, answer=answer, levels=lv, aspects=body))
    return path


def _single_rows(n: int = 300, seed: int = 0) -> list[dict]:
    """'future work' never in gold; column a has blanks and unknown names, b none."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        g = rng.choices(CLASSES[:3], (0.55, 0.3, 0.15))[0]
        a = g if rng.random() < 0.75 else rng.choice([*CLASSES, "", "unsure"])
        b = g if rng.random() < 0.65 else rng.choice(CLASSES)
        rows.append({"id": f"c{i}", "gold": g, "a": a.upper() if i % 7 == 0 else a, "b": b})
    return rows


def _table(rows: list[dict], name: str = "t.csv") -> Table:
    return Table(Path(name), list(rows[0]), rows)


def test_module_doctest():
    assert doctest.testmod(score_module).failed == 0


def test_single_label_columns_equal_scikit_learn():
    rows = _single_rows()
    result = score(join([_table(rows)], None), SINGLE, "gold", ["a", "b"], resamples=200)
    out = result.as_json()
    index = {c: i for i, c in enumerate(CLASSES)}
    gold = [index[r["gold"]] for r in rows]
    labels = sorted(set(gold))
    for c in ("a", "b"):
        pred = [index.get(r[c].strip().lower(), -1) for r in rows]
        col = out["columns"][c]
        assert col["n"] == 300 and col["invalid"] == sum(p == -1 for p in pred)
        assert col["accuracy"] == pytest.approx(skm.accuracy_score(gold, pred), abs=1e-12)
        for avg in ("macro", "micro", "weighted"):
            p, r, f, _ = skm.precision_recall_fscore_support(
                gold, pred, labels=labels, average=avg, zero_division=0
            )
            got = (col[f"{avg}_precision"], col[f"{avg}_recall"], col[f"{avg}_f1"])
            assert got == pytest.approx((p, r, f), abs=1e-12)
        for key in ("accuracy", "macro_f1", "micro_f1"):
            lo, hi = col[f"{key}_ci"]
            assert lo <= col[key] <= hi and hi - lo > 0.02
        f1 = skm.f1_score(gold, pred, labels=labels, average=None, zero_division=0)
        for i, name in enumerate(CLASSES[:3]):
            assert col["per_class"][name]["f1"] == pytest.approx(f1[i], abs=1e-12)
            lo, hi = col["per_class"][name]["f1_ci"]
            assert lo <= f1[i] <= hi
        assert col["per_class"]["future work"]["f1"] is None  # no gold support
        assert col["per_class"]["future work"]["f1_ci"] is None
    reasons = out["columns"]["a"]["invalid_reasons"]
    assert reasons == {
        "empty": sum(r["a"] == "" for r in rows),
        "invalid": sum(r["a"].lower() == "unsure" for r in rows),
    }  # fmt: skip


def test_pairs_use_the_rows_both_answered_with_mcnemar():
    rows = _single_rows()
    out = score(join([_table(rows)], None), SINGLE, "gold", ["a", "b"], resamples=200).as_json()
    (pair,) = out["pairs"]
    both = [r for r in rows if r["a"].strip()]  # 'unsure' is an answer (wrong), '' is none
    right_a = [r["a"].lower() == r["gold"] for r in both]
    right_b = [r["b"] == r["gold"] for r in both]
    b = sum(x and not y for x, y in zip(right_a, right_b, strict=True))
    c = sum(y and not x for x, y in zip(right_a, right_b, strict=True))
    assert (pair["a"], pair["b"], pair["n"]) == ("a", "b", len(both))
    assert (pair["mcnemar_b"], pair["mcnemar_c"]) == (b, c)
    assert pair["p_value"] == pytest.approx(binomtest(min(b, c), b + c, 0.5).pvalue)
    assert pair["accuracy_difference"] == pytest.approx((b - c) / len(both))
    lo, hi = pair["macro_f1_difference_ci"]
    assert lo <= pair["macro_f1_difference"] <= hi
    index = {x: i for i, x in enumerate(CLASSES)}
    g = [index[r["gold"]] for r in both]
    labels = sorted(set(g))
    fa = skm.f1_score(
        g, [index.get(r["a"].lower(), -1) for r in both], labels=labels, average="macro"
    )
    fb = skm.f1_score(g, [index[r["b"]] for r in both], labels=labels, average="macro")
    assert pair["macro_f1_difference"] == pytest.approx(fa - fb, abs=1e-12)


def test_a_pair_answered_everywhere_reuses_the_columns_draws():
    rows = [r | {"a": r["b"] if not r["a"].strip() else r["a"]} for r in _single_rows(120)]
    joined = join([_table(rows)], None)
    out = score(joined, SINGLE, "gold", ["a", "b"], resamples=300).as_json()
    (pair,) = out["pairs"]
    # the same draws as compare() on the same rows: equal numbers either way
    from llmscisci_cfg.eval import stats
    from llmscisci_cfg.eval.metrics import OVERALL, Scored, parts

    idx = {c: i for i, c in enumerate(CLASSES)}

    def rows_of(col):
        return [
            Scored("intent", idx[r["gold"]], idx.get(r[col].lower()), True, doc=f"row {i + 1}")
            for i, r in enumerate(rows)
        ]

    comp = stats.compare(rows_of("a"), rows_of("b"), lambda x: parts(x, SINGLE)[OVERALL], 300)
    assert pair["macro_f1_difference_ci"] == pytest.approx(comp["metric"]["macro_f1"]["interval"])
    assert pair["accuracy_difference_ci"] == pytest.approx(comp["metric"]["accuracy"]["interval"])


def test_json_has_the_documented_shape():
    out = score(join([_table(_single_rows(60))], None), SINGLE, "gold", ["a", "b"], resamples=100)
    out = out.as_json()
    col = out["columns"]["a"]
    for key in ("n", "invalid", "accuracy", "macro_precision", "macro_recall", "macro_f1",
                "micro_f1", "weighted_f1", "per_class", "accuracy_ci", "macro_f1_ci"):  # fmt: skip
        assert key in col, key
    assert set(col["per_class"]["method"]) >= {"precision", "recall", "f1", "support"}
    assert set(out["pairs"][0]) >= {
        "a", "b", "n", "accuracy_difference", "mcnemar_b", "mcnemar_c", "p_value",
        "macro_f1_difference", "macro_f1_difference_ci",
    }  # fmt: skip
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert out["bootstrap"]["unit"] == "row" and out["unit"] == "rows"


def test_multi_label_every_aspect_at_once_from_joined_tables():
    kinds = {"easy": MultiLabel(("a", "b", "c")), "difficult": MultiLabel(("x", "y"))}
    rng = random.Random(3)
    gold_rows, pred_rows = [], []
    for i in range(80):
        ge = [int(rng.random() < 0.4) for _ in range(3)]
        gd = [int(rng.random() < 0.5) for _ in range(2)]
        gold_rows.append({"doc": str(i), "easy": str(ge), "difficult": str(gd)})
        flip = lambda v: [x if rng.random() < 0.8 else 1 - x for x in v]  # noqa: E731
        if i % 10:
            pred_rows.append({"doc": str(i), "easy_p": str(flip(ge)), "difficult_p": str(flip(gd))})
    joined = join([_table(gold_rows, "gold.csv"), _table(pred_rows, "p.jsonl")], "doc")
    out = score(joined, kinds, "{aspect}", ["{aspect}_p"], resamples=100).as_json()
    col = out["columns"]["{aspect}_p"]
    assert out["units"] == 80 and out["examples"] == 160 and out["unit"] == "ids"
    assert col["invalid"] == 16 and col["invalid_reasons"] == {"missing": 16}  # 8 docs × 2
    assert set(col["aspects"]) == {"easy", "difficult"}
    # overall pools both aspects: block-diagonal indicators, invalid rows as complements
    g = np.zeros((160, 5), int)
    p = np.zeros((160, 5), int)
    preds = {r["doc"]: r for r in pred_rows}
    j = 0
    for r in gold_rows:
        for aspect, start in (("easy", 0), ("difficult", 3)):
            gv = json.loads(r[aspect])
            pr = preds.get(r["doc"])
            pv = [1 - x for x in gv] if pr is None else json.loads(pr[f"{aspect}_p"])
            g[j, start : start + len(gv)], p[j, start : start + len(gv)] = gv, pv
            j += 1
    assert col["accuracy"] == pytest.approx(skm.accuracy_score(g, p))
    labels = [k for k in range(5) if g[:, k].any()]
    assert col["macro_f1"] == pytest.approx(skm.f1_score(g, p, labels=labels, average="macro"))
    assert "easy/a" in col["per_class"] and "a" in col["aspects"]["easy"]["per_class"]


def test_dimensions_add_their_own_metric_keys():
    kind = DimensionLabel(("happiness", "anxiety", "trust"), ("low", "medium", "high"))
    rows = [
        {"g": "{'happiness': 'high'}", "m": '{"happiness": "low"}'},
        {"g": "{}", "m": "{}"},
        {"g": "{'anxiety': 'medium', 'trust': 'low'}", "m": "{'anxiety': 'medium'}"},
        {"g": "{'trust': 'high'}", "m": "not json"},
    ]
    out = score(join([_table(rows)], None), {"t": kind}, "g", ["m"], resamples=100).as_json()
    col = out["columns"]["m"]
    assert col["intensity_accuracy"] == pytest.approx(7 / 12)  # row 4 invalid: 3 cells wrong
    assert col["dimension_accuracy"] == pytest.approx(8 / 12)
    for key in ("fn_rate", "fp_rate", "jaccard", "fn_rate_ci"):
        assert key in col
    assert col["confusion"]["rows"] == ["not present", "low", "medium", "high"]


def test_a_csv_written_with_missing_gold_scores_only_the_coded_rows(tmp_path):
    """`predict` over posts of which only some are coded writes null gold; in a CSV that is an
    empty cell, which is missing, never the coding "no dimension" (``{}`` is)."""
    kind = DimensionLabel(("happiness", "anxiety"), ("low", "medium", "high"))
    rows = [
        {"id": "1", "g": "{'happiness': 'high'}", "m": '{"happiness": "high"}'},
        {"id": "2", "g": "{}", "m": "{}"},
        {"id": "3", "g": None, "m": "{}"},  # uncoded: left out, not a correct "none"
        {"id": "4", "g": None, "m": '{"anxiety": "low"}'},  # uncoded: left out, not an error
    ]
    path = write_table(tmp_path / "preds.csv", rows)
    assert path.read_text().splitlines()[3] == "3,,{}"  # null is an empty cell in a CSV
    table = Table(path, ["id", "g", "m"], list(csv.DictReader(open(path, encoding="utf-8"))))
    result = score(join([table], None), {"t": kind}, "g", ["m"], resamples=50)
    col = result.as_json()["columns"]["m"]
    assert (col["n"], col["dimension_accuracy"]) == (2, 1.0)
    assert result.notes == ["gold 'g': 2 empty left out (no gold label)"]


# ----------------------------------------------------------------------------- the command


@pytest.fixture
def cli():
    runner = CliRunner()
    return lambda *args: runner.invoke(main, ["score", *map(str, args)])


@pytest.fixture
def files(tmp_path):
    task = task_file(tmp_path / "intent.yaml", "single", {"intent": list(CLASSES)})
    table = write_table(tmp_path / "preds.csv", _single_rows(80))
    return task, table


def test_cli_json_and_text(cli, files):
    task, table = files
    result = cli(table, "--task", task, "--gold", "gold", "--columns", "a", "b", "--json",
                 "--resamples", "200")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert list(out["columns"]) == ["a", "b"] and out["kind"] == "single"
    text = cli(table, "--task", task, "--gold", "gold", "a", "b", "--resamples", "200")
    assert text.exit_code == 0, text.output
    assert "accuracy" in text.output and "a − b on the" in text.output
    assert "McNemar's exact test" in text.output and "(paired bootstrap)" in text.output


def test_cli_warns_about_small_sets(cli, tmp_path):
    task = task_file(tmp_path / "intent.yaml", "single", {"intent": list(CLASSES)})
    table = write_table(tmp_path / "p.csv", _single_rows(20))
    result = cli(table, "--task", task, "--gold", "gold", "a", "b", "--resamples", "100")
    assert result.exit_code == 0, result.output
    assert "warning: the test set has 20 rows (fewer than 30)" in result.output
    assert "cannot declare any accuracy difference below 0.300" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--gold", "gold", "a", "zz"], "no column 'zz'"),
        (["--gold", "gold", "gold"], "also among the columns"),
        (["--gold", "nope", "a"], "no column 'nope'"),
        (["--gold", "gold"], "give one or more prediction columns"),
        (["--gold", "gold", "a", "--aspect", "other"], "no aspect 'other'"),
    ],
)
def test_cli_mistakes_exit_2_without_traceback(cli, files, args, expected):
    task, table = files
    result = cli(table, "--task", task, *args)
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output


def test_cli_wrong_task_and_two_tables_without_id(cli, files, tmp_path):
    _, table = files
    result = cli(table, "--task", "builtin:repro_effort", "--aspect", "easy", "--gold", "gold", "a")
    assert result.exit_code == 2 and "is it the right task" in result.output
    other = write_table(tmp_path / "other.csv", [{"x": 1}])
    task = files[0]
    result = cli(table, other, "--task", task, "--gold", "gold", "a")
    assert result.exit_code == 2 and "--id" in result.output


def test_cli_help():
    result = CliRunner().invoke(main, ["score", "--help"])
    assert result.exit_code == 0 and "McNemar" in result.output and "--gold" in result.output


# ----------------------------------------------------------------------------- real data


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"{path} is absent (../shared/data is not here)")
    return path


def _perturb(rows: list[dict], column: str, choices: list[str], seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        r | {"model": r[column] if rng.random() < 0.7 else rng.choice([*choices, ""])} for r in rows
    ]


@pytest.mark.parametrize(
    ("folder", "classes"),
    [
        ("scicite", ["background information", "method", "results comparison"]),
        (
            "acl-arc",
            ["BACKGROUND", "USES", "COMPARES_CONTRASTS", "MOTIVATION", "EXTENDS", "FUTURE"],
        ),
    ],
)
def test_real_single_label_data(cli, tmp_path, folder, classes):
    path = _need(DATA / folder / "test.csv")
    with path.open(encoding="utf-8") as f:
        rows = [
            {"id": r["unique_id"], "gold": r["citation_class_label"]} for r in csv.DictReader(f)
        ]
    rows = _perturb(rows, "gold", classes, seed=1)
    table = write_table(tmp_path / "preds.csv", rows)
    task = task_file(tmp_path / "t.yaml", "single", {"intent": classes})
    result = cli(table, "--task", task, "--gold", "gold", "--id", "id", "--columns", "model",
                 "--json", "--resamples", "200")  # fmt: skip
    assert result.exit_code == 0, result.output
    col = json.loads(result.stdout)["columns"]["model"]
    gold = [r["gold"] for r in rows]
    pred = [r["model"] if r["model"] else "(empty)" for r in rows]
    assert col["n"] == len(rows) and col["invalid"] == pred.count("(empty)")
    assert col["accuracy"] == pytest.approx(skm.accuracy_score(gold, pred))
    assert col["macro_f1"] == pytest.approx(
        skm.f1_score(gold, pred, labels=sorted(set(gold)), average="macro", zero_division=0)
    )
    assert sum(v["support"] for v in col["per_class"].values()) == len(rows)


def test_real_dimensions_data(tmp_path):
    path = _need(DATA / "flourishing" / "answers.csv")
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:400]
    # the dimensions as the file spells them (lower case), read from the file itself
    dims = sorted({k.strip() for r in rows for k in ast.literal_eval(r["answer"])})
    kind = DimensionLabel(tuple(dims), ("low", "medium", "high"))
    rng = random.Random(2)
    table_rows = []
    for r in rows:
        answer = ast.literal_eval(r["answer"])
        drop = {k: v for k, v in answer.items() if rng.random() < 0.8}
        table_rows.append({"id": r["id"], "gold": r["answer"], "model": json.dumps(drop)})
    out = score(join([_table(table_rows)], "id"), {"tweet": kind}, "gold", ["model"], resamples=100)
    col = out.as_json()["columns"]["model"]
    assert col["n"] == 400 and col["invalid"] == 0
    assert col["fp_rate"] == 0.0 and 0 < col["fn_rate"] < 0.4  # only drops: no false positive
    assert (
        col["dimension_accuracy"] > 0.9 and col["intensity_accuracy"] == col["dimension_accuracy"]
    )


# ----------------------------------------------------------------------------- shipped tasks


def _shipped_label_tasks() -> list[str]:
    """Every shipped task whose answers are labels (more land as the task files do)."""
    from llmscisci_cfg.resources import shipped
    from llmscisci_cfg.task.spec import load_task

    folder = shipped("assets", "tasks/repro_effort.yaml").parent
    names = []
    for path in sorted(folder.glob("*.yaml")):
        if load_task(f"builtin:{path.stem}", folder).kind == "label":
            names.append(f"builtin:{path.stem}")
    return names


@pytest.mark.parametrize("ref", _shipped_label_tasks())
def test_every_shipped_label_task_end_to_end_through_score_and_agree(tmp_path, ref):
    """Gold and two answer columns written in each kind's public form, every aspect at once:
    `score` and `agree` read them back through the task's codecs."""
    from llmscisci_cfg.eval.columns import task_kinds

    _, kinds = task_kinds(ref, None, tmp_path)
    rng = random.Random(0)
    rows = []
    for i in range(40):
        row = {"id": f"d{i}"}
        for aspect, kind in kinds.items():
            if kind.kind == "single":
                gold = rng.randrange(kind.n)
                guess = gold if rng.random() < 0.7 else rng.randrange(kind.n)
            elif kind.kind == "multi":
                allowed = kind.allowed() if kind.n <= 10 else [kind.example()]
                gold = allowed[i % len(allowed)]
                guess = gold if rng.random() < 0.7 else allowed[rng.randrange(len(allowed))]
            else:
                gold = tuple(rng.choice([0, 0, 0, 1, len(kind.levels)]) for _ in range(kind.n))
                guess = tuple(g if rng.random() < 0.9 else 0 for g in gold)

            def public(v, k=kind):
                return json.dumps(k.public(v)) if k.kind != "single" else k.public(v)

            row[f"{aspect}_gold"] = public(gold)
            row[f"{aspect}_a"] = public(guess)
            row[f"{aspect}_b"] = public(gold) if i % 5 else ""
        rows.append(row)
    table = write_table(tmp_path / "t.jsonl", rows)
    runner = CliRunner()
    result = runner.invoke(main, ["score", str(table), "--task", ref, "--gold", "{aspect}_gold",
                                  "--columns", "{aspect}_a", "{aspect}_b", "--json",
                                  "--resamples", "100"])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    b = out["columns"]["{aspect}_b"]
    assert out["examples"] == 40 * len(kinds) and b["invalid"] == 8 * len(kinds)
    assert b["accuracy"] == pytest.approx(32 / 40)  # right wherever it answered
    result = runner.invoke(main, ["agree", str(table), "--task", ref, "--columns",
                                  "{aspect}_gold", "{aspect}_a", "{aspect}_b", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    per_aspect = found["aspects"] if len(kinds) > 1 else {next(iter(kinds)): found}
    for aspect, agreement in per_aspect.items():
        gold_b = next(p for p in agreement["pairs"] if p["b"] == f"{aspect}_b")
        assert gold_b["n"] == 32 and gold_b["agreement"] == 1.0
        assert agreement["kind"] == kinds[aspect].kind


def test_real_data_agreement(tmp_path):
    """SciCite's gold against two perturbed copies through `agree --task`: Cohen's kappa over
    the three categories, as scikit-learn computes it."""
    path = _need(DATA / "scicite" / "test.csv")
    classes = ["background information", "method", "results comparison"]
    with path.open(encoding="utf-8") as f:
        rows = [{"gold": r["citation_class_label"]} for r in csv.DictReader(f)]
    rows = _perturb(rows, "gold", classes, seed=3)
    rng = random.Random(4)
    rows = [r | {"other": r["gold"] if rng.random() < 0.8 else rng.choice(classes)} for r in rows]
    table = write_table(tmp_path / "a.csv", rows)
    task = task_file(tmp_path / "t.yaml", "single", {"intent": classes})
    result = CliRunner().invoke(
        main, ["agree", str(table), "gold", "model", "other", "--task", str(task), "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    pair = next(p for p in out["pairs"] if (p["a"], p["b"]) == ("gold", "other"))
    assert pair["kappa"]["category"] == pytest.approx(
        skm.cohen_kappa_score([r["gold"] for r in rows], [r["other"] for r in rows])
    )
    assert out["fleiss"]["category"] is not None and out["alpha_level"] == "nominal"
