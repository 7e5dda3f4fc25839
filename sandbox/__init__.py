"""Run candidate programs under the challenge limits and score them with trusted code."""
