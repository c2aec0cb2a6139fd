"""Every door gives the same answer (issue 20): local `predict`, `predict` through `llmscisci
serve`, and `eval` read one resolved generation spec and one answer grammar, so the same model
on the same rows answers the same, whichever command asked.

The served model is `llmscisci serve builtin:tiny`: weights from seed 42, as a recipe naming the
same builtin model gets them by default (its train.seed).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from llmscisci_cfg.resources import data_file
from llmscisci_cfg.task.kinds import MultiLabel, read_answer
from llmscisci_cfg.task.spec import load_task

LABEL = "builtin:quickstart/label_tiny"
SFT = "builtin:quickstart/sft_tiny"


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def served(server, form: str = "auto") -> tuple[str, ...]:
    return (
        "--set", "generation.backend=openai",
        "--set", f"generation.base_url={server.url}",
        "--set", "generation.model=builtin:tiny",
        "--set", f"generation.server_grammar={form}",
    )  # fmt: skip


def predict(cli, out: Path, *args: str) -> list[dict[str, str]]:
    result = cli("predict", LABEL, "--output", out, *args)
    assert result.exit_code == 0, result.output
    return rows_of(out)


def answers(rows: list[dict[str, str]], column: str) -> list[str]:
    return [row[f"{aspect}_{column}"] for row in rows for aspect in ("easy", "difficult")]


def test_predict_through_serve_answers_byte_for_byte_as_local(cli, tmp_path, server):
    """Greedy, structured, the same model: `_pred` and `_raw` are identical on every row (the
    first 4 reports here; all of the sample in the slow suite)."""
    limit = ("--limit", "4")
    local = predict(cli, tmp_path / "local.csv", *limit)
    remote = predict(cli, tmp_path / "served.csv", *limit, *served(server))
    assert answers(remote, "raw") == answers(local, "raw")
    assert answers(remote, "pred") == answers(local, "pred")
    asked = [
        p
        for p, why in zip(answers(local, "pred"), answers(local, "reason"), strict=True)
        if why != "empty_text"
    ]
    assert asked and all(asked)  # every answer parsed (the grammar makes sure)
    mine, theirs = answers(local, "confidence"), answers(remote, "confidence")
    assert [bool(c) for c in mine] == [bool(p) for p in answers(local, "pred")]  # one per answer
    for a, b in zip(mine, theirs, strict=True):  # the server's log-probabilities, same model
        assert (a == b == "") or (
            0 < float(a) <= 1 and float(b) == pytest.approx(float(a), rel=1e-2)
        )
    report = json.loads((tmp_path / "served.csv.report.json").read_text())
    assert report["generation"]["server"]["grammar"] == "auto"  # found: llmscisci serve
    assert report["backend"] == "openai" and report["base_url"] == server.url
    assert (
        report["generation"]["chat_template"]["sha256"]
        == json.loads((tmp_path / "local.csv.report.json").read_text())["generation"][
            "chat_template"
        ]["sha256"]
    )


@pytest.mark.slow
def test_every_row_of_the_sample_answers_the_same_through_serve(cli, tmp_path, server):
    local = predict(cli, tmp_path / "local.csv")
    remote = predict(cli, tmp_path / "served.csv", *served(server))
    assert len(local) == 120
    assert answers(remote, "raw") == answers(local, "raw")
    assert answers(remote, "pred") == answers(local, "pred")


@pytest.mark.parametrize("form", ["llmscisci", "json_schema"])
def test_the_server_forms_keep_the_task_label_constraints(cli, tmp_path, server, form):
    """The reproducibility task's constraints (category 5 alone, at least one category) reach
    the server in the grammar (``llmscisci``) and in the JSON form (an enumeration of the
    allowed labels): every answer is valid and none breaks them. `_raw` holds what came back
    (the JSON form's answer is JSON)."""
    rows = predict(cli, tmp_path / "out.csv", "--limit", "3", *served(server, form))
    task = load_task("builtin:repro_effort", Path("."))
    raws = [(aspect, row[f"{aspect}_raw"]) for row in rows for aspect in ("easy", "difficult")]
    raws = [(aspect, raw) for aspect, raw in raws if raw]  # an empty section is not asked
    plain = MultiLabel.plain(5)  # no rule: what was answered, whether or not it is allowed
    for aspect, raw in raws:
        label = read_answer(raw, plain).value
        assert label is not None and task.label_rule(aspect).allows(label), (form, raw)
        assert read_answer(raw, task.label_kind(aspect)).value == label
    if form == "json_schema":
        assert all(raw.startswith('{"think"') for _, raw in raws)


def test_a_regex_the_tokenizer_cannot_decode_is_refused_with_the_way_out(cli, tmp_path, server):
    """The tiny tokenizer writes `<think>` as one added token, which no regex matches: the
    server says so before generating (400), and predict says so (exit 2)."""
    result = cli(
        "predict", LABEL, "--output", tmp_path / "out.csv", "--limit", "2",
        *served(server, "regex"),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "one added token that a regex cannot match" in result.output
    assert "server_grammar: llmscisci" in result.output


def test_eval_and_predict_give_the_same_completions(cli, tmp_path, cache):
    """`eval --recipe` of a training recipe and `predict` of a predict recipe that share task,
    model, template, data and generation settings answer the test rows alike."""
    gen = ("--set", "generation.max_new_tokens=64", "--set", "generation.structured=true")
    out = tmp_path / "eval"
    result = cli(
        "eval", "--recipe", SFT, "--model", "builtin:tiny", "--output-dir", out, *gen,
        "--limit", "4",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    evaluated = {
        (row["id"], row["aspect"]): row["completion"]
        for row in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())
    }
    ids = {doc for doc, _ in evaluated}  # predict the same reports: a table of just them
    sample = rows_of(data_file("builtin:sample", Path("."), "data.source.path"))
    table = tmp_path / "reports.csv"
    with table.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(sample[0]))
        writer.writeheader()
        writer.writerows(row for row in sample if row["doi"] in ids)
    seed = ("--set", "train.seed=0")  # the SFT recipe's, so the same builtin weights
    rows = predict(cli, tmp_path / "p.csv", *gen, *seed, "--set", f"data.source.path={table}")
    predicted = {
        (row["doi"], aspect): row[f"{aspect}_raw"]
        for row in rows
        for aspect in ("easy", "difficult")
    }
    assert len(evaluated) == 4
    assert {key: predicted[key] for key in evaluated} == evaluated


def test_eval_through_a_server_answers_as_local_eval(cli, tmp_path, cache, server):
    """`eval` honours `generation.backend: openai`: a model behind a server is evaluated with
    the same spec, and answers as the same model evaluated locally."""
    gen = (
        "--set",
        "generation.max_new_tokens=48",
        "--set",
        "generation.structured=true",
        "--limit",
        "6",
        "--set",
        "train.seed=42",  # builtin:tiny's weights as `serve builtin:tiny` builds them
    )
    outs = {}
    for name, extra in (("local", ()), ("served", served(server))):
        out = tmp_path / name
        result = cli(
            "eval", "--recipe", SFT, "--model", "builtin:tiny", "--output-dir", out, *gen, *extra
        )
        assert result.exit_code == 0, result.output
        outs[name] = [json.loads(x)["completion"] for x in (out / "predictions.jsonl").open()]
        meta = json.loads((out / "meta.json").read_text())
        assert meta["decoding"]["structured"] is True and meta["max_new_tokens"] == 48
    assert outs["served"] == outs["local"]
    assert meta["decoding"]["backend"] == "openai"


def test_serve_seeds_a_builtin_model_as_a_recipe_does():
    """`serve builtin:tiny` and a recipe naming builtin:tiny build the same random weights by
    default (train.seed's default), so the doors agree without a --set."""
    from llmscisci_cfg.cli.serve import serve
    from llmscisci_cfg.recipe.schema import TrainSpec

    seed = next(p for p in serve.params if p.name == "seed")
    assert seed.default == TrainSpec.model_fields["seed"].default == 42
