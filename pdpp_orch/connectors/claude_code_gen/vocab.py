"""The names, paths and words generated session logs are made of (a developer's machine, roughly)."""

from __future__ import annotations

HOME = "/home/ana"
ORGS = ["pdp-connect", "ana-codes", "acme-data", "openlab", "nightjar-io", "fieldnotes"]
REPOS = [
    "pdpp-orchestrator",
    "pdpp-reference-implementation",
    "polyfill-connectors",
    "dotfiles",
    "household-ledger",
    "thesis-latex",
    "garden-sensor-firmware",
    "recipe-scraper",
    "blog",
    "infra-terraform-modules",
    "chatgpt-export-tools",
    "slack-archive-viewer",
    "usaa-csv-importer",
    "photo-dedupe",
    "mail-rules",
    "budget-dashboard",
    "kitchen-display",
    "bike-telemetry",
]
BRANCHES = ["main", "main", "main", "dev", "feat/cursor-compaction", "fix/413-state-body", "wip"]
MODELS = [
    "claude-sonnet-4-20250514",
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1-20250805",
    "claude-haiku-4-5-20251001",
]
VERSIONS = ["1.0.83", "1.0.98", "1.0.113", "2.0.14", "2.0.31"]
TOOLS = ["Bash", "Read", "Edit", "Grep", "Glob", "Write", "TodoWrite", "WebFetch", "Task"]
TOPICS = [
    "testing",
    "deploy",
    "style",
    "architecture",
    "debugging",
    "dependencies",
    "release",
    "database",
    "api-conventions",
    "ci",
    "performance",
    "security",
    "onboarding",
    "glossary",
]
WORDS = (
    "the a of to and in is for that with on as it be are this by run cursor state record stream "
    "connector runtime commit flush buffer session message token file path mtime json line error "
    "retry backoff gap skip worker workflow activity postgres temporal schema manifest test fixture "
    "assert import def class return async await yield lambda None True False self config env "
    "deploy build ruff mypy pytest commit branch merge rebase diff patch hunk review approve "
    "café naïve façade résumé 日本語 테스트 données größe 🙂 ✅ →"
).split()
