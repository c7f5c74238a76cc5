"""Temporal activities: every piece of I/O (connector processes, PostgreSQL)."""
