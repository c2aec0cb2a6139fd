"""The data stage: read the source table, build examples, filter by length, cache."""
