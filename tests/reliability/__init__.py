"""Reliability tests: real engine, real processes, killed drivers and unreachable endpoints."""
