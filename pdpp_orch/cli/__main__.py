"""`python -m pdpp_orch.cli`: the same as `pdpp-orch`."""

from pdpp_orch.cli import main

main()
