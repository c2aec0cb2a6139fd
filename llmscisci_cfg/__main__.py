"""``python -m llmscisci_cfg`` is ``llmscisci`` (used by ``accelerate launch -m``)."""

from llmscisci_cfg.cli import main

main()
