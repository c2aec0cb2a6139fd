"""Fixtures for the server tests (`llmscisci_cfg.serve`); the session's subprocess server is
``server`` in tests/conftest.py (helpers in tests/serve_helpers.py)."""
