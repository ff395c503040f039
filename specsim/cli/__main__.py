"""``python -m specsim.cli``: the ``specsim`` command."""

import sys

from . import main

sys.exit(main())
