"""The recipe: YAML reading, the schema, loading with located errors, cross-field checks."""
