"""training.precision: mixed_bfloat16 computes in bfloat16, keeps the weights, the output blocks,
the losses and the predictions in float32, and leaves Keras's global policy as it was."""
from pathlib import Path

import keras
import numpy as np
import pytest

from composer import training
from composer.cli import main
from composer.compiler import BuildContext

layer = BuildContext.layer_name_of  # Keras layer name of a graph node

ROOT = Path(__file__).resolve().parents[1]
MMOE = str(ROOT / "blueprints" / "mmoe.yaml")
DATA = "synthetic:rows=2000"


@pytest.fixture(scope="module")
def mixed():
    exp = training.prepare(MMOE, data=DATA, training={"precision": "mixed_bfloat16", "epochs": 2})
    history = training.fit(exp, verbose=0, batch_size=256)
    return exp, history.history


def test_mixed_bfloat16_computes_in_bfloat16_with_float32_weights(mixed):
    exp, _ = mixed
    experts = exp.model.get_layer(layer("moe/experts"))
    assert experts.compute_dtype == "bfloat16"
    assert {v.dtype for v in exp.model.weights} == {"float32"}


def test_outputs_losses_and_predictions_stay_float32(mixed):
    exp, history = mixed
    for task in exp.tasks:
        assert exp.model.output[task].dtype == "float32"
        assert exp.model.get_layer(layer(f"tower.{task}")).compute_dtype == "float32"
    assert exp.model.get_layer("numeric_norm").compute_dtype == "float32"
    x, y, w = exp.arrays("valid")
    losses = exp.trainer.task_losses(y, exp.model(x, training=False), w)
    assert all(keras.backend.standardize_dtype(loss.dtype) == "float32" for loss in losses)
    preds = training.predict(exp, "test")
    for p in preds.values():
        assert p.dtype == np.float32 and np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1))
    assert all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < history["loss"][0]  # it trains


def test_global_policy_is_restored(mixed):
    assert keras.config.dtype_policy().name == "float32"
    exp = training.prepare(MMOE, data=DATA)  # the default precision after a mixed one
    assert exp.model.get_layer(layer("moe/experts")).compute_dtype == "float32"


def test_mixed_policy_survives_save_and_reload(mixed, tmp_path):
    from composer import load_model

    exp, _ = mixed
    training.save_run(exp, str(tmp_path))
    again = load_model(str(tmp_path / training.RUN_FILES["model"]))
    assert again.get_layer(layer("moe/experts")).compute_dtype == "bfloat16"
    assert again.get_layer(layer("tower.click")).compute_dtype == "float32"


def test_bad_precision_names_the_flag_and_the_valid_values(capsys):
    assert main(["train", MMOE, "--data", DATA, "--precision", "bfloat16", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "--precision" in err and "float32" in err and "mixed_bfloat16" in err, err
    assert "did you mean 'mixed_bfloat16'?" in err, err


def test_bad_precision_in_the_blueprint_is_located(tmp_path, capsys):
    path = tmp_path / "bp.yaml"
    text = Path(MMOE).read_text().replace("seed: 2018", "seed: 2018, precision: half")
    assert "precision: half" in text
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "precision: half" in ln)
    assert f"bp.yaml:{line}:" in err and "precision" in err and "mixed_bfloat16" in err, err


@pytest.mark.parametrize("name", ["mmoe", "ple", "pepnet", "m2m", "star"])
def test_mixed_model_reloads_with_every_sublayer_policy_and_identical_predictions(name, tmp_path):
    """Sub-layers made in ``build()`` take their parent's policy, not the global one at load time
    (which is float32): otherwise a reloaded mixed model computes in other dtypes."""
    from composer import load_model

    data = ("synthetic-msl:rows=2000" if name in ("pepnet", "star") else
            "kuairand-pure:rows=2000" if name == "m2m" else DATA)
    exp = training.prepare(str(ROOT / "blueprints" / f"{name}.yaml"), data=data,
                           training={"precision": "mixed_bfloat16"})
    x, _, _ = exp.arrays("test")
    expected = exp.model.predict(x, verbose=0)
    exp.model.save(tmp_path / "m.keras")
    again = load_model(str(tmp_path / "m.keras"))
    policies = {l.path: l.dtype_policy.name for l in exp.model._flatten_layers(include_self=False)}
    reloaded = {l.path: l.dtype_policy.name for l in again._flatten_layers(include_self=False)}
    assert reloaded == policies
    got = again.predict(x, verbose=0)
    for task in exp.tasks:
        np.testing.assert_array_equal(np.asarray(got[task]), np.asarray(expected[task]))
