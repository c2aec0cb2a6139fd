"""`llmscisci serve`: an OpenAI-compatible server over the generation engine."""
