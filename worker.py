"""`python worker.py`: run a worker, the same as `pdpp-orch worker`."""

from pdpp_orch.cli import app

if __name__ == "__main__":
    app(["worker"])
