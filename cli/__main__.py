"""``python -m cli``: the ``orders`` command line."""

from cli.main import main

main()
