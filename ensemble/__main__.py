"""``python -m ensemble``: the same command line as the ``ensemble`` script."""
from .cli import main

main()
