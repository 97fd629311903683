"""Ratio benchmarks: each figure compares two things measured side by side in one run."""
