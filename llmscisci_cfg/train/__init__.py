"""Training: compile a recipe to TRL, build the trainer, launch and run it."""
