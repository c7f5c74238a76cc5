"""`python -m pdpp_orch.connectors.claude_code`: one collection (see the package docstring)."""

from pdpp_orch.connectors.claude_code.collect import main

if __name__ == "__main__":
    main()
