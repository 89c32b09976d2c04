"""``python -m jaxconv.plots --workdir DIR``: see `jaxconv.plots.cli`."""

import sys

from jaxconv import runtime
from jaxconv.cli_errors import quiet_logging
from jaxconv.plots.cli import main

if __name__ == "__main__":
    quiet_logging()  # the cache's warnings as one `warning: ...` line
    runtime.enable_compilation_cache()  # ~/.cache/jaxconv/jax; JAXCONV_COMPILATION_CACHE=0: off
    sys.exit(main())
