"""``python -m affineur.cli``: the same as the ``affineur`` command."""

import sys

from affineur.cli import main

sys.exit(main())
