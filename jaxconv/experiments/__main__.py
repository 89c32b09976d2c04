"""``python -m jaxconv.experiments --config FILE --workdir W [--quick]``: see `cli`."""

from absl import app

from jaxconv.experiments import cli

if __name__ == "__main__":
    cli.define_flags()
    app.run(cli.main)
