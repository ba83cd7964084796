"""Allow `python -m evalctl ...`."""

from evalctl.cli import main

main()
