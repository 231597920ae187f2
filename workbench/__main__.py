"""``python -m workbench``: the CLI (``workbench.cli.main``); Ctrl-C while it loads is exit 130."""

import os
import sys

try:
    from workbench.cli import main
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr, flush=True)
    os._exit(130)  # no teardown: a module cut short mid-import may not survive it

sys.exit(main())
