"""``python -m weaklabels ...``: the same command line as the ``weaklabels`` script."""

import sys

from weaklabels.cli import main

sys.exit(main())
