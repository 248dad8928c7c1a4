"""Allow ``python -m imgkit``."""

import sys

from imgkit.commands import main

sys.exit(main())
