"""pdpp-orchestrator: honest PDPP connector runs on Temporal and PostgreSQL."""
