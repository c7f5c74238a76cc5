"""`python -m pdpp_orch.connectors.claude_code_gen OUT_DIR [...]`: see the package docstring."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from pdpp_orch.connectors import claude_code_gen as gen


def main(argv: list[str] | None = None) -> None:
    """CLI: generate a tree and print its counts as JSON."""
    ap = argparse.ArgumentParser(
        prog="python -m pdpp_orch.connectors.claude_code_gen",
        description=(gen.__doc__ or "").split("\n")[0],
    )
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--sessions", type=int, default=gen.DEFAULT_SESSIONS)
    ap.add_argument("--messages", type=int, default=gen.DEFAULT_MESSAGES)
    ap.add_argument("--attachments", type=int, default=gen.DEFAULT_ATTACHMENTS)
    ap.add_argument("--memory-notes", type=int, default=gen.DEFAULT_MEMORY_NOTES)
    ap.add_argument("--projects", type=int, default=gen.DEFAULT_PROJECTS)
    ap.add_argument("--seed", type=int, default=gen.DEFAULT_SEED)
    ap.add_argument("--malformed-lines", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        summary = gen.generate(
            args.out_dir,
            sessions=args.sessions,
            messages=args.messages,
            attachments=args.attachments,
            memory_notes=args.memory_notes,
            projects=args.projects,
            seed=args.seed,
            malformed_lines=args.malformed_lines,
        )
    except ValueError as e:
        ap.error(str(e))
    sys.stdout.buffer.write(orjson.dumps(summary.counts(), option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    main()
