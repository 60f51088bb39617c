"""``python -m derainzoo`` runs the ``derainzoo`` command."""

import sys

from derainzoo.cli import main

if __name__ == "__main__":
    sys.exit(main())
