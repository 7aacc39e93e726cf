"""The paper's pre-training vs self-training study (scripts/reproduce_paper.py)."""
