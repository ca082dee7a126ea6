"""`--set KEY=VALUE` overrides any blueprint setting, checked like the file; `--version`."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from composer.blueprint import load_blueprint
from composer.blueprint.errors import BlueprintError
from composer.cli import main, parser

ROOT = Path(__file__).resolve().parents[1]
MMOE = str(ROOT / "blueprints/mmoe.yaml")  # from_data features: {from_data: true, dim: 8}
sys.path.insert(0, str(ROOT / "tests/blueprint"))
from test_errors import MMOE as EXPLICIT  # noqa: E402  (features written out as a list)


@pytest.fixture
def explicit(tmp_path):
    path = tmp_path / "explicit.yaml"
    path.write_text(EXPLICIT)
    return str(path)


def test_overrides_reach_every_kind_of_setting(explicit):
    bp, _ = load_blueprint(MMOE, sets=["training.learning_rate=0.003", "blocks.moe.experts=8",
                                       "loss.weights.click=2", "blocks.tower.units=[64,32]",
                                       "features.dim=16"])
    assert bp.training.learning_rate == 0.003
    assert bp.blocks["moe"].experts == 8
    assert bp.loss.weights == {"click": 2.0}
    assert bp.blocks["tower"].units == [64, 32]
    assert {f.dim for f in bp.features if f.kind == "categorical"} == {16}
    for key in ("features[0].dim", "features.0.dim"):
        bp, _ = load_blueprint(explicit, sets=[f"{key}=32"])
        assert bp.features[0].dim == 32 and bp.features[1].dim == 16


def test_override_adds_a_block_and_a_later_one_wins():
    bp, _ = load_blueprint(MMOE, sets=["blocks.moe={type: mmoe, input: x, experts: 2, units: [8]}",
                                       "blocks.moe.experts=3", "training.seed=5", "training.seed=6"])
    assert (bp.blocks["moe"].experts, bp.blocks["moe"].units, bp.training.seed) == (3, [8], 6)


def test_override_fills_a_section_the_file_leaves_out(tmp_path):
    path = tmp_path / "no_training.yaml"
    path.write_text(EXPLICIT.replace("training: {optimizer: adam, learning_rate: 0.001, batch_size: 1024, "
                                     "epochs: 3, seed: 2018}\n", ""))
    bp, _ = load_blueprint(str(path), sets=["training.epochs=7"])
    assert bp.training.epochs == 7


def error(file, *sets) -> str:
    with pytest.raises(BlueprintError) as info:
        load_blueprint(file, sets=list(sets))
    return str(info.value)


@pytest.mark.parametrize("override,pattern", [
    ("blocks.moe.expert=8", r"^--set blocks\.moe\.expert=8: blocks\.moe: unknown key 'expert'; "
                            r"did you mean 'experts'\?"),
    ("blocks.mo.experts=8", r"^--set blocks\.mo\.experts=8: .*mmoe\.yaml has no blocks\.mo; did you mean 'moe'\? "
                            r"keys of blocks: moe, tower, x$"),
    ("trainig.epochs=3", r"^--set trainig\.epochs=3: unknown key 'trainig'; did you mean 'training'\?"),
    ("blocks.tower.units=[64,-32]", r"^--set blocks\.tower\.units=\[64,-32\]: blocks\.tower\.units\[1\]: "
                                    r"must be greater than 0, got -32$"),
    ("loss.weights.clik=2", r"^--set loss\.weights\.clik=2: loss\.weights\.clik: 'clik' is not a task; "
                            r"did you mean 'click'\?"),
    ("training.learning_rate.x=1", r"training\.learning_rate is a number, not a mapping or list"),
    ("features[0].dim=16", r"features is a mapping, not a list, so it has no item \[0\]; its keys: dim, from_data"),
    ("blocks.moe", r"^--set blocks\.moe: expected KEY=VALUE"),
    ("blocks..moe=1", r"'blocks\.\.moe' is not a dotted key"),
    ("blocks.moe.units=[1,", r"the value is not valid YAML"),
    ("blocks.moe.units=!!python/name:os.system", r"tag '!!python/name:os\.system' is not allowed"),
    ("tasks[0].where=click", r"tasks is a string, not a mapping or list, so it has no \[0\]"),
    ("data=nope", r"^--set data=nope: data: unknown dataset 'nope'"),
])
def test_bad_override_names_the_override(override, pattern):
    message = error(MMOE, override)
    assert len(message.splitlines()) == 1, message
    assert re.search(pattern, message), message


@pytest.mark.parametrize("override,pattern", [
    ("features[9].dim=16", r"features has 6 item\(s\), so \[9\] does not exist; items count from 0: \[0\] \.\. \[5\]"),
    ("features.price.dim=16", r"features is a list, so 'price' must be an index; features\[4\] is 'price'"),
    ("features[0].dim=0", r"^--set features\[0\]\.dim=0: features\[0\]\.dim: must be greater than or equal to 1"),
    ("tasks[1].label=click &&", r"^--set tasks\[1\]\.label=click &&: "),  # an expression, no file position
])
def test_bad_override_in_a_list(explicit, override, pattern):
    message = error(explicit, override)
    assert re.search(pattern, message), message


def test_a_later_override_owns_what_it_replaces():
    message = error(MMOE, "blocks.moe.experts=3", "blocks.moe={type: mmoe, input: x, expert: 2, units: [8]}")
    assert message.startswith("--set blocks.moe={type: mmoe, input: x, expert: 2, units: [8]}: blocks.moe: "
                              "unknown key 'expert'"), message


@pytest.mark.parametrize("command", ["validate", "summary", "render", "plan", "build", "train", "compare"])
def test_every_blueprint_command_takes_set(command):
    extra = ["-o", "x.svg"] if command == "render" else []
    args = parser().parse_args([command, MMOE, *extra, "--set", "a=1", "--set", "b.c=[2]"])
    assert args.set == ["a=1", "b.c=[2]"]


def test_set_through_the_cli(capsys, tmp_path):
    assert main(["plan", MMOE, "--set", "loss.weights.click=2.5"]) == 0
    assert re.search(r"click .* 2\.5\n", capsys.readouterr().out)
    assert main(["summary", MMOE, "--set", "blocks.moe.experts=8", "--set", "blocks.moe.units=[16]"]) == 0
    assert "moe/experts     expert_pool  (B, 8, 16)" in capsys.readouterr().out
    assert main(["validate", MMOE, MMOE, "--set", "blocks.moe.expert=8"]) == 2
    err = capsys.readouterr().err
    assert err.count("--set blocks.moe.expert=8: blocks.moe: unknown key 'expert'; did you mean 'experts'?") == 2


def test_set_error_in_a_subprocess_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "composer", "validate", MMOE, "--set", "blocks.moe.expert=8"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("--set blocks.moe.expert=8: blocks.moe: unknown key 'expert'; "
                                  "did you mean 'experts'?"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"composer {version('composer-rec')}"


def test_version_falls_back_to_pyproject(monkeypatch):
    import importlib.metadata

    from composer import cli

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    expected = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert cli._version() == expected


def test_set_reaches_training(capsys):
    """train and compare hand --set to training.prepare; a bad one stops before any data loads."""
    from composer import training

    exp = training.prepare(MMOE, data="synthetic:rows=2000", training={"epochs": 1},
                           sets=["blocks.moe.experts=2", "training.learning_rate=0.003"])
    assert (exp.bp.blocks["moe"].experts, exp.bp.training.learning_rate, exp.bp.training.epochs) == (2, 0.003, 1)
    for command in (["train", MMOE], ["compare", MMOE]):
        assert main([*command, "--rows", "100", "--set", "blocks.moe.expert=2"]) == 2
        assert "unknown key 'expert'; did you mean 'experts'?" in capsys.readouterr().err
