"""``python -m robustal`` is the ``robustal`` command."""

from robustal.cli import main

main()
