"""``python -m jaxconv.predict --workdir DIR FILE...``: see `jaxconv.predict.cli`."""

import sys

from jaxconv.predict.cli import main

if __name__ == "__main__":
    sys.exit(main())
