"""How much a command prints, decided in one place.

Three levels, chosen per command with ``--quiet`` / ``--verbose`` (`cli.common.verbosity_options`):

- ``quiet``: warnings, errors and the command's final lines (``run directory: PATH``, tables);
- ``normal`` (the default): also one progress line per stage, e.g. what trains and then
  ``step 20/100  loss 1.234  1.8 s/step  ETA 2m24s``;
- ``verbose``: also everything the libraries print (their loggers, tqdm bars, TRL's log dict).

Below ``verbose`` the libraries' noise is filtered: their loggers go to ERROR, transformers'
and datasets' progress bars are off (model hub downloads keep theirs), and known deprecation
warnings from transformers/torch/trl/peft are ignored. Status lines go to stderr, results to
stdout.

Light to import (standard library only): `set_level` touches environment variables, stdlib
loggers and warning filters; `configure_libraries` imports transformers and datasets, so it is
called just before a model loads.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

QUIET, NORMAL, VERBOSE = "quiet", "normal", "verbose"
LEVELS = (QUIET, NORMAL, VERBOSE)
ENV = "LLMSCISCI_VERBOSITY"  # how a launching process hands its level to its workers

# Loggers of libraries whose INFO/WARNING lines are not the user's business below verbose.
LIBRARY_LOGGERS = ("transformers", "datasets", "accelerate", "bitsandbytes", "peft", "torchao")
# Deprecation noise raised inside the libraries themselves (the user cannot act on it).
NOISY_MODULES = r"(transformers|torch|trl|peft|accelerate|datasets|bitsandbytes)(\.|$)"
ENV_DEFAULTS = {"TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}

_level: str | None = None
_filters: list[tuple] = []  # the warning filters set_level added, removed again by verbose
_open_line = False  # a progress line on a terminal waits for its newline


def level() -> str:
    """The current level: the one set for this command, else `inherited`."""
    return _level if _level is not None else inherited()


def inherited() -> str:
    """The level from ``$LLMSCISCI_VERBOSITY`` (set for workers, or by the user), else normal."""
    value = os.environ.get(ENV, "")
    return value if value in LEVELS else NORMAL


def set_level(name: str) -> None:
    """Choose the level for this process and filter the libraries' noise accordingly.

    Imports nothing: environment defaults (``TRANSFORMERS_VERBOSITY=error``,
    ``TOKENIZERS_PARALLELISM=false``; a value the user set wins), logger levels and warning
    filters apply to libraries imported later as well.
    """
    global _level
    if name not in LEVELS:
        raise ValueError(f"unknown verbosity {name!r}; one of {', '.join(LEVELS)}")
    _level = name
    quiet_libraries = name != VERBOSE
    if quiet_libraries:
        for key, value in ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
    for logger in LIBRARY_LOGGERS:
        logging.getLogger(logger).setLevel(logging.ERROR if quiet_libraries else logging.NOTSET)
    _set_warning_filters(quiet_libraries)


def _set_warning_filters(on: bool) -> None:
    for item in _filters:
        if item in warnings.filters:
            warnings.filters.remove(item)
    _filters.clear()
    if on:
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=NOISY_MODULES)
            _filters.append(warnings.filters[0])
    mutated = getattr(warnings, "_filters_mutated", None)  # so cached decisions are dropped
    if mutated is not None:
        mutated()


def child_env() -> dict[str, str]:
    """Environment for worker processes (``accelerate launch``), so they print at this level."""
    return {ENV: level()}


def progress() -> bool:
    """Whether to print progress lines (the normal level)."""
    return level() == NORMAL


def library_output() -> bool:
    """Whether the libraries print as they like (the verbose level)."""
    return level() == VERBOSE


def info(message: str) -> None:
    """A status line on stderr, unless quiet."""
    if level() != QUIET:
        end_line()
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A warning line on stderr, at every level."""
    end_line()
    print(message, file=sys.stderr, flush=True)


def progress_line(text: str) -> None:
    """A progress line on stderr at the normal level: on a terminal it replaces the previous
    one in place; otherwise (a log file, a pipe) each is its own line."""
    global _open_line
    if not progress():
        return
    err = sys.stderr
    if err.isatty():
        err.write("\r" + text + "\x1b[K")  # erase what a longer previous line left
        _open_line = True
    else:
        err.write(text + "\n")
    err.flush()


def end_line() -> None:
    """End a progress line left open on the terminal (before other output, or when done)."""
    global _open_line
    if _open_line:
        _open_line = False
        sys.stderr.write("\n")
        sys.stderr.flush()


def configure_libraries() -> None:
    """Apply the level to transformers and datasets (imports them: call before a model loads).

    Below verbose: their loggers at ERROR and their progress bars off (``Tokenizing train
    dataset``, ``Loading weights``, ``Writing model shards``); verbose turns them back on.
    """
    import datasets
    import transformers

    set_level(level())  # the loggers and filters, again, now that the libraries exist
    if library_output():
        transformers.utils.logging.set_verbosity_warning()
        transformers.utils.logging.enable_progress_bar()
        datasets.utils.logging.set_verbosity_warning()
        datasets.enable_progress_bars()
    else:
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
