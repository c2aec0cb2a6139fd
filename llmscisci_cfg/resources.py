"""Where a name in a recipe points: shipped ``builtin:`` files, or paths relative to the recipe.

These are the project's only path rules. Shipped files (recipes, chat templates, the JSON
schema, task files, sample data, the tiny tokenizer) go through `importlib.resources`, so they
work from a wheel, an editable install or a source checkout alike.

>>> ref_path("data/r.csv", Path("/work/recipes"))
PosixPath('/work/recipes/data/r.csv')
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from llmscisci_cfg.errors import UserError

BUILTIN = "builtin:"
_KINDS = {"recipes", "templates", "schemas", "assets"}
#: Shipped data files, by ``builtin:`` name.
BUILTIN_DATA = {
    "sample": "sample/reports.csv",
    "sample_traces": "sample/traces.jsonl",
    "sample_citations": "sample/citations.csv",
    "sample_tweets": "sample/tweets.csv",
}


def is_builtin(ref: str) -> bool:
    return ref.startswith(BUILTIN)


def root(kind: str) -> Path:
    """Directory of a shipped resource kind (``recipes``, ``templates``, ``schemas``, ``assets``)."""
    assert kind in _KINDS, kind
    return Path(str(resources.files(f"llmscisci_cfg.{kind}")))


def shipped(kind: str, name: str) -> Path:
    """Path of one shipped file, or a `UserError` listing what exists.

    ``name`` is relative to the kind's folder and stays inside it (``builtin:../x`` is refused).
    """
    base = root(kind)
    path = (base / name).resolve()
    if (
        Path(name).is_absolute()
        or ".." in Path(name).parts
        or not path.is_relative_to(base.resolve())
    ):
        raise UserError(
            f"{BUILTIN}{name}: a built-in name cannot leave the package's {kind} folder"
        )
    if not path.is_file():
        have = sorted(
            p.relative_to(root(kind)).as_posix()
            for p in root(kind).rglob("*")
            if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
        )
        close = difflib.get_close_matches(name, have, n=1, cutoff=0.6)
        hint = f" (did you mean {BUILTIN}{close[0]}?)" if close else ""
        raise UserError(
            f"{BUILTIN}{name}: no such built-in {kind[:-1]}{hint}; available: {', '.join(have)}"
        )
    return path


def builtin_recipes() -> list[Path]:
    """All shipped recipe files, sorted."""
    return sorted(root("recipes").rglob("*.yaml"))


def ref_path(ref: str, base: Path) -> Path:
    """A recipe-relative path (``~`` expanded) as an absolute one; absolute paths stay."""
    path = Path(ref).expanduser()
    return path if path.is_absolute() else (Path(base) / path).resolve()


def recipe_file(ref: str) -> Path:
    """``builtin:quickstart/sft_tiny`` → the shipped file; anything else is a plain path, which
    must exist (a `UserError` naming the nearest shipped recipes otherwise)."""
    if is_builtin(ref):
        name = ref[len(BUILTIN) :]
        return shipped("recipes", name if name.endswith(".yaml") else name + ".yaml")
    path = Path(ref)
    if not path.exists() and not path.is_symlink():  # a dangling link is read, and explained
        raise UserError(f"{ref}: no such file (a recipe){nearest_recipes(ref)}")
    return path


def nearest_recipes(ref: str, most: int = 3) -> str:
    """`` (did you mean builtin:grpo_gemma?)`` for a recipe path that does not exist: the shipped
    recipes whose name (``repro_effort/grpo_qwen2.5``, also against as many trailing parts of
    the path) or file name is closest, best first; of several recipes with one file name
    (``quickstart/sft_tiny``, ``flourishing/sft_tiny``), only the one in the closest folder.

    >>> nearest_recipes("recipes/grpo_gemma3.yaml")
    ' (did you mean builtin:grpo_gemma?)'
    >>> nearest_recipes("/somewhere/quickstart/sft_tny.yaml")
    ' (did you mean builtin:quickstart/sft_tiny?)'
    """
    names = [p.relative_to(root("recipes")).with_suffix("").as_posix() for p in builtin_recipes()]
    wanted = Path(ref).with_suffix("") if Path(ref).suffix in (".yaml", ".yml") else Path(ref)
    tail = wanted.as_posix().rsplit("recipes/", 1)[-1]  # recipes/x/y → x/y
    scores: dict[str, float] = {}
    paths: dict[str, float] = {}  # the name against the path alone (which folder is closer)
    for name in names:
        end = "/".join(wanted.parts[-len(Path(name).parts) :])  # /a/quickstart/x → quickstart/x
        paths[name] = max(difflib.SequenceMatcher(None, a, name).ratio() for a in (tail, end))
        file = difflib.SequenceMatcher(None, wanted.name, Path(name).name).ratio()
        scores[name] = max(paths[name], file)
    top = max(scores.values(), default=0.0)
    close = [n for n in names if scores[n] >= max(0.6, top - 0.1)]
    best, files = [], set()
    for name in sorted(close, key=lambda n: (-scores[n], -paths[n])):
        if Path(name).name not in files:  # the same file name in a closer folder came first
            files.add(Path(name).name)
            best.append(name)
    best = best[:most]
    if not best:
        return f"; shipped recipes: {', '.join(BUILTIN + n for n in names)}"
    return f" (did you mean {' or '.join(BUILTIN + n for n in best)}?)"


def task_file(ref: str, base: Path) -> Path:
    """``builtin:NAME`` → the shipped task file; anything else is recipe-relative."""
    if is_builtin(ref):
        return shipped("assets", f"tasks/{ref[len(BUILTIN) :]}.yaml")
    return ref_path(ref, base)


def unknown_builtin_data(ref: str) -> str | None:
    """Why ``ref`` is not a shipped data name (``builtin:nope``), or None when it is one or is
    not a ``builtin:`` name at all. `validate` and the data stage both ask this."""
    if not is_builtin(ref) or ref[len(BUILTIN) :] in BUILTIN_DATA:
        return None
    close = difflib.get_close_matches(ref[len(BUILTIN) :], list(BUILTIN_DATA), n=1, cutoff=0.6)
    hint = f" (did you mean {BUILTIN}{close[0]}?)" if close else ""
    names = ", ".join(BUILTIN + n for n in BUILTIN_DATA)
    return f"{ref}: no such built-in data{hint}; available: {names}"


def data_file(ref: str, base: Path, key: str) -> Path:
    """A data reference (``builtin:sample``, ``builtin:sample_traces`` or recipe-relative) as an
    existing path; ``key`` names the recipe key in messages."""
    if is_builtin(ref):
        problem = unknown_builtin_data(ref)
        if problem:
            raise UserError(f"{key}: {problem}")
        return shipped("assets", BUILTIN_DATA[ref[len(BUILTIN) :]])
    path = ref_path(ref, base)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory ({key}: {ref})")
    return path


def local_model_dir(name: str, base: Path) -> Path | None:
    """``model.name_or_path`` as a local folder (the cwd first, then recipe-relative), or None."""
    if is_builtin(name):
        return None
    for candidate in (Path(name).expanduser(), ref_path(name, base)):
        if candidate.is_dir():
            return candidate.resolve()
    return None
