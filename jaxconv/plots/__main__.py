"""``python -m jaxconv.plots --workdir DIR``: see `jaxconv.plots.cli`."""

import sys

from jaxconv.plots.cli import main

if __name__ == "__main__":
    sys.exit(main())
