"""``python -m workbench``: the CLI (``workbench.cli.main``); Ctrl-C while it loads is exit 130."""

import sys

try:
    from workbench.cli import main
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
