"""The collect engine: run one connector process and stream what it says into the record
store (collector.py is the place to start reading)."""

from activities.collect.collector import Collector
from activities.collect.facts import facts_from_resume, fit

__all__ = ["Collector", "facts_from_resume", "fit"]
