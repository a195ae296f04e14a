"""The ``orders`` command line, an entry point over the composition root (``bootstrap``)."""
