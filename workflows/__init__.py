"""Deterministic Temporal workflows (no I/O; see the import-linter contract)."""
