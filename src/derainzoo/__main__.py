"""``python -m derainzoo`` runs the ``derainzoo`` command."""

import sys

from derainzoo.cli import main

sys.exit(main())
