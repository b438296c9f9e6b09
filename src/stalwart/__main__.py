"""``python -m stalwart`` is the ``stalwart`` command."""

from stalwart.cli import main

main()
