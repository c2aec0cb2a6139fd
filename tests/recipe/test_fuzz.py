"""Mutated recipe texts always give exit 0 or a clean exit 2, never a crash."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmscisci_cfg.cli import main
from tests.conftest import RECIPES

SEEDS = [p.read_text(encoding="utf-8") for p in sorted(RECIPES.rglob("*.yaml"))]
ALPHABET = st.sampled_from(list(" \t\n:-[]{},'\"!&*#|>%@`0123456789.eE_abcxyz\x00\u00e9"))


@st.composite
def mutated(draw) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["insert", "delete", "replace", "dup_line", "drop_line", "swap"])
        )
        lines = text.split("\n")
        if kind in ("dup_line", "drop_line", "swap") and len(lines) > 2:
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if kind == "dup_line":
                lines.insert(i, lines[i])
            elif kind == "drop_line":
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
            continue
        pos = draw(st.integers(0, max(0, len(text) - 1)))
        chars = draw(st.text(ALPHABET, min_size=1, max_size=3))
        if kind == "insert":
            text = text[:pos] + chars + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[pos + len(chars) :]
        else:
            text = text[:pos] + chars + text[pos + len(chars) :]
    return text


def _never_crashes(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert "fuzz.yaml" in result.output


_FIXTURE = [HealthCheck.function_scoped_fixture]


@settings(max_examples=30, deadline=None, suppress_health_check=_FIXTURE)
@given(text=mutated())
def test_mutated_recipes_never_crash(tmp_path, text):
    _never_crashes(tmp_path, text)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=_FIXTURE)
@given(text=mutated())
def test_many_mutated_recipes_never_crash(tmp_path, text):
    _never_crashes(tmp_path, text)
