"""``python -m bleprov`` is the ``bleprov`` command."""

from bleprov.cli import main

main()
