"""``python -m bioplastic.cli``: the ``bioplastic`` command (torchrun starts ranks this way)."""

import sys

from bioplastic.cli import main

if __name__ == "__main__":
    sys.exit(main())
