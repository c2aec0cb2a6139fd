"""Evaluation: generate on the held-out split, score, report."""
