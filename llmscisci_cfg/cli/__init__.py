"""The ``llmscisci`` command line: one module per command group, registered here.

Every module here imports only light modules at top level: ``--help``, ``validate``, ``plan``
and ``schema`` never load torch, trl, peft, transformers, bitsandbytes, accelerate or datasets.
"""

from __future__ import annotations

import click

from llmscisci_cfg.cli import agree, data, eval, predict, recipe, rewards, run, score, serve
from llmscisci_cfg.cli.common import UserErrorGroup


@click.group(cls=UserErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmscisci_cfg", prog_name="llmscisci")
def main() -> None:
    """Declarative fine-tuning (SFT, DPO, GRPO) of LLMs for scientometrics labelling.

    Write a YAML recipe, check it with `validate`, inspect it with `plan`, train with `run`,
    measure with `eval`. Every recipe field is documented in the JSON schema (`schema`).
    """


for _module in (recipe, data, rewards, run, eval, predict, agree, score, serve):
    _module.register(main)


if __name__ == "__main__":
    main()
