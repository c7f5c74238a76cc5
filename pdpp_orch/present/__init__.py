"""The read model of the present (DESIGN §12): what is missing now and what happens next,
after recoveries, cancellations and later runs — one derivation every surface renders.

- model.py: its inputs (the ledger per hint, each recovery's state, later runs) and output
- estimate.py: how many records open gaps stand for (`records_missing_estimate`)
- fates.py: one retry hint's fate, in words, with the command that acts on it
- derive.py: the present of a run or a connector

Pure: pdpp_orch.control.present gathers the inputs (PostgreSQL, Temporal). Import the modules
themselves: this package imports nothing, so the store may use its models."""
