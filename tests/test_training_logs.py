"""The progress bar's time left: measured from the end of the first (compiling) step."""

import pytest

from jaxconv.training.logs import Eta, MetricLogger


class FakeClock:
    """Seconds that move only when the test says."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_eta_leaves_out_the_compiling_first_step():
    clock = FakeClock()
    eta = Eta(total_steps=600, clock=clock)
    assert eta.seconds_left() is None and eta.text() == "eta: compiling"
    clock.now += 60.0  # Step 1: a minute of compilation.
    eta.update(1)
    assert eta.seconds_left() is None and eta.text() == "eta: estimating"
    clock.now += 0.5  # Steps 2..11 at 20 steps/s.
    eta.update(11)
    # 589 steps left at 10 steps / 0.5 s, not at 11 steps / 60.5 s (~54 minutes).
    assert eta.seconds_left() == pytest.approx(589 / 20)
    assert eta.text() == "eta 00:29"
    clock.now += 29.45
    eta.update(600)
    assert eta.seconds_left() == 0.0 and eta.text() == "eta 00:00"


def test_eta_of_a_resumed_run_counts_from_its_first_step():
    clock = FakeClock()
    eta = Eta(total_steps=1000, clock=clock)
    clock.now += 30.0
    eta.update(501)  # Resumed at 500: its first step compiles.
    clock.now += 2.0
    eta.update(601)  # 100 steps in 2 s.
    assert eta.seconds_left() == pytest.approx(399 / 50)


def test_progress_bar_shows_the_eta_then_loss(tmp_path):
    clock = FakeClock()
    logger = MetricLogger(str(tmp_path), total_steps=100, initial_step=0, enabled=True,
                          progress_bar=True, clock=clock)
    try:
        assert logger.postfix() == "eta: compiling"
        clock.now += 45.0
        logger.advance()
        assert logger.postfix() == "eta: estimating"
        clock.now += 1.0
        logger.advance(9)  # 9 steps/s from step 1 on: 90 steps left, 10 s.
        logger.log_train(10, {"loss": 0.25, "images_per_second": 1234.4})
        assert logger.postfix() == "eta 00:10, loss=0.2500, img_s=1234"
        assert logger.history == [{"step": 10, "train_loss": 0.25,
                                   "train_images_per_second": 1234.4}]
    finally:
        logger.close()
