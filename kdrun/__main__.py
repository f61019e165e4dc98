"""`python -m kdrun` is the `kdrun` command."""

from kdrun.cli import main

main()
