"""The layout is the architecture: no import cycles, one module loads weights, light subpackages
stay light, and the README tree names every module."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "llmscisci_cfg"
HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes")
#: Modules that import an ML library at import time, on purpose (they subclass its classes).
HEAVY_AT_IMPORT = {"llmscisci_cfg.train.callbacks"}
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(tree: ast.AST) -> set[str]:
    """Every package module a file imports, anywhere (functions and TYPE_CHECKING blocks too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            # `from pkg import name`: the submodule when it is one, else the module itself
            names = [n for n in names[:-1] if n in MODULES] or [node.module]
        else:
            continue
        found |= {n for n in names if n in MODULES}
    return found


def graph() -> dict[str, set[str]]:
    return {name: imported(ast.parse(path.read_text())) - {name} for name, path in MODULES.items()}


def test_no_import_cycle_between_modules():
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


#: The layers, bottom first: a module may import its own subpackage and any layer below its
#: own, never one above, and never a sibling in its layer (the doors are independent). The
#: recipe's schema and strict YAML reader are base files (everything reads recipes).
LAYERS = [
    ("base", ["errors", "files", "digest", "resources", "sandbox", "console", "assets",
              "recipe.schema", "recipe.yamlio"]),
    ("task", ["task"]),
    ("models", ["models"]),
    ("rewards", ["rewards"]),
    ("recipe", ["recipe"]),
    ("data", ["data"]),
    ("runs", ["runs"]),
    ("train", ["train"]),
    ("doors", ["eval", "predict", "serve"]),
    ("cli", ["cli", "", "__main__"]),  # "": the package's public API (llmscisci_cfg/__init__)
]  # fmt: skip


def place(module: str) -> tuple[int, str]:
    """(layer index, unit) of a module: the unit is its subpackage (or base file)."""
    rest = module.removeprefix("llmscisci_cfg").removeprefix(".")
    best = None
    for index, (_, units) in enumerate(LAYERS):
        for unit in units:
            if rest == unit or (unit and rest.startswith(unit + ".")):
                if best is None or len(unit) > len(best[1]):
                    best = (index, unit)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Every import that points up a layer, or sideways from one door to another."""
    found = []
    for src, targets in sorted(edges.items()):
        layer, unit = place(src)
        for dst in sorted(targets):
            other_layer, other_unit = place(dst)
            sideways = other_layer == layer and other_unit != unit
            if other_layer > layer or (sideways and LAYERS[layer][0] == "doors"):
                found.append(f"{src} -> {dst} ({LAYERS[layer][0]} -> {LAYERS[other_layer][0]})")
    return found


def test_every_import_points_down_the_layers():
    assert upward(graph()) == []


def test_an_upward_import_is_caught():
    edges = graph()
    edges["llmscisci_cfg.models.load"] = edges["llmscisci_cfg.models.load"] | {
        "llmscisci_cfg.runs.rundir"
    }
    edges["llmscisci_cfg.eval.agree"] = edges["llmscisci_cfg.eval.agree"] | {
        "llmscisci_cfg.predict.runner"
    }
    assert upward(edges) == [
        "llmscisci_cfg.eval.agree -> llmscisci_cfg.predict.runner (doors -> doors)",
        "llmscisci_cfg.models.load -> llmscisci_cfg.runs.rundir (models -> runs)",
    ]


def layers_line() -> str:
    """The README's one-line statement of the layers, made from `LAYERS`."""
    names = [
        "base files" if name == "base" else " | ".join(units) if name == "doors" else name
        for name, units in LAYERS
    ]
    return "Layers, bottom first: " + " < ".join(names)


def test_the_readme_lists_the_layers():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    layout = text.split("## Layout", 1)[1].split("```", 1)[0]
    assert layers_line() in layout.replace("\n", " "), layers_line()


def test_imports_inside_functions_count():
    a = ast.parse("from llmscisci_cfg.recipe import loader\n")
    b = ast.parse("def f():\n    from llmscisci_cfg.recipe.loader import load_job\n")
    assert imported(a) == {"llmscisci_cfg.recipe.loader"}
    assert imported(b) == {"llmscisci_cfg.recipe.loader"}


def _from_pretrained_calls(path: Path) -> set[str]:
    """The receivers of ``X.from_pretrained(...)`` calls in a file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "from_pretrained" and isinstance(node.func.value, ast.Name):
                out.add(node.func.value.id)
    return out


def test_one_module_loads_model_weights_and_tokenizers():
    callers = {name: _from_pretrained_calls(p) for name, p in MODULES.items()}
    callers = {name: found for name, found in callers.items() if found}
    assert set(callers) == {"llmscisci_cfg.models.load", "llmscisci_cfg.models.tiny"}
    # the tiny-model builder only reads the shipped tokenizer file (weights come from a config)
    assert callers["llmscisci_cfg.models.tiny"] == {"PreTrainedTokenizerFast"}
    text = "\n".join(p.read_text() for n, p in MODULES.items() if n != "llmscisci_cfg.models.load")
    assert "PeftModel" not in text and "AutoTokenizer" not in text


def members(subpackage: str) -> list[str]:
    """The modules of a subpackage; ``""`` is the package's top-level modules."""
    if not subpackage:
        return [n for n, p in MODULES.items() if p.parent == PACKAGE and p.stem != "__main__"]
    prefix = f"llmscisci_cfg.{subpackage}"
    return [n for n in MODULES if n == prefix or n.startswith(prefix + ".")]


@pytest.mark.parametrize("subpackage", ["", *SUBPACKAGES], ids=lambda s: s or "top-level")
def test_light_subpackages_import_no_ml_library(subpackage):
    """Importing every module of a subpackage (in a fresh process) loads no ML library."""
    names = [n for n in members(subpackage) if n not in HEAVY_AT_IMPORT]
    probe = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"{subpackage} imports {out.stdout.strip()}"


def readme_tree() -> set[str]:
    """The paths the README's layout block names (directories end in ``/``)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    paths, stack = set(), []
    for line in block.splitlines():
        m = re.match(r"^( *)(\S+)", line)
        if not m:
            continue
        depth, name = len(m.group(1)) // 2, m.group(2)
        stack = stack[:depth] + [name]
        paths.add("".join(stack))
    return paths


def test_readme_tree_names_every_module():
    named = readme_tree()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if path.name == "__init__.py" and path.parent != PACKAGE:
            rel = rel.removesuffix("__init__.py")  # a subpackage: its folder line
        if rel not in named:
            missing.append(rel)
    assert missing == []
