"""`python -m pdpp_orch.upstream`: run the simulated upstreams (see docs/simulated-upstreams.md)."""

from __future__ import annotations

import argparse

from pdpp_orch.upstream.server import serve


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until SIGTERM/SIGINT."""
    p = argparse.ArgumentParser(prog="python -m pdpp_orch.upstream", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--world", default="seed", help="seed (default), small, or a world JSON file")
    p.add_argument("--plan", default=None, help="fault plan JSON file or preset (case-a/c/d/e)")
    p.add_argument("--ready-file", default=None, help='write {"url", "pid"} here once listening')
    args = p.parse_args(argv)
    serve(args.host, args.port, args.world, args.plan, args.ready_file)


if __name__ == "__main__":
    main()
