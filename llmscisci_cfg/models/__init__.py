"""Models and tokenizers: chat templates, the built-in tiny models."""
