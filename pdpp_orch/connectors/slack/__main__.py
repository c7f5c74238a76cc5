"""`python -m pdpp_orch.connectors.slack`: one collection (see the package docstring)."""

from pdpp_orch.connectors.slack.collect import main

if __name__ == "__main__":
    main()
