"""`load_trained_model`: the model is built from its shapes (no initializer runs) and filled
with the checkpoint's parameters; it equals the model that was saved."""

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from jaxconv import runs
from jaxconv.data import DatasetInfo
from jaxconv.models import create_model

pytestmark = pytest.mark.slow  # trains or starts processes: the full suite only

# StageNet with a hidden layer and dropout: dropout's RNG streams must come out concrete.
KWARGS = {"features": (4, 8), "kernel_size": 3, "lcn_kernel_size": (3, 3), "pool": "max",
          "hidden": (16,), "dropout": 0.5, "num_classes": 10, "input_shape": (8, 8, 1)}
INFO = DatasetInfo("digits", 10, (8, 8, 1), 1, 1, tuple("0123456789"), "train", "test")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A workdir holding run.json and one checkpoint of an eagerly built model (seed 3)."""
    workdir = tmp_path_factory.mktemp("run")
    model = create_model("stagenet", rngs=nnx.Rngs(3), **KWARGS)
    params = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    runs.write_run_info(str(workdir), model="stagenet", model_kwargs=KWARGS, dataset=INFO,
                        config={})
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(workdir / runs.CHECKPOINTS_DIR / "7" / runs.STATE_ITEM,
                      {"params": params, "step": 7})
    checkpointer.wait_until_finished()
    model.eval()
    return str(workdir), model, params


def test_loaded_model_equals_the_saved_one(saved):
    workdir, reference, params = saved
    model, info = runs.load_trained_model(workdir, seed=0)
    assert info.model == "stagenet" and info.dataset == INFO
    got = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    jax.tree.map(np.testing.assert_array_equal, got, params)
    x = jax.random.uniform(jax.random.key(0), (5, 8, 8, 1))
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(reference(x)))
    leaves = jax.tree.leaves(nnx.state(model))
    assert not any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)


def test_model_is_built_abstractly(saved, monkeypatch):
    """The constructor runs under `nnx.eval_shape`: its arrays are tracers, nothing is
    initialized or compiled eagerly."""
    concrete = []

    def spy(*args, **kwargs):
        try:
            float(jnp.ones(()))
            concrete.append(True)
        except jax.errors.ConcretizationTypeError:
            concrete.append(False)
        return create_model(*args, **kwargs)

    monkeypatch.setattr(runs, "create_model", spy)
    runs.load_trained_model(saved[0])
    assert concrete == [False]


def test_parameters_that_do_not_fit_are_refused(saved):
    workdir, _, params = saved
    wrong = jax.tree.map(lambda a: a, params)
    wrong["output"]["kernel"] = np.zeros((16, 3), np.float32)
    with pytest.raises(ValueError, match="the given parameters does not fit model 'stagenet'"):
        runs.load_trained_model(workdir, params=wrong)
