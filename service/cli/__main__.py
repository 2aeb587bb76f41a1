"""``python -m slicelab.service.cli``: the ``slicelab`` command line."""

from slicelab.service.cli import main

main()
