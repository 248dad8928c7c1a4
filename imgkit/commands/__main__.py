"""Allow ``python -m imgkit.commands``."""

import sys

from imgkit.commands import main

sys.exit(main())
