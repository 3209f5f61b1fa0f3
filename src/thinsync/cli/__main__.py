"""`python -m thinsync.cli`."""

from thinsync.cli.main import main

main()
