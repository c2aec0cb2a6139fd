"""Run directories: layout, manifest, plots, export and reproduce."""
