"""`python -m agent.cli ...`: the `ownrec` command, for scripts and tests that run it as a subprocess."""

from agent.cli import main

main()
