"""Build hook (the project is described in pyproject.toml): a wheel carries the repository's
shipped blueprints, ``blueprints/*.yaml``, as package data under ``composer/blueprints/``, so a
plain ``pip install .`` has them (``composer blueprints``). The repository's folder stays the
source of truth; an editable install and a checkout read it directly (composer/blueprints_catalog.py)."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithBlueprints(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "composer" / "blueprints"
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted((HERE / "blueprints").glob("*.yaml")):
            shutil.copyfile(source, target / source.name)

    def get_outputs(self, include_bytecode=True):
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            target = Path(self.build_lib) / "composer" / "blueprints"
            outputs += [str(target / p.name) for p in sorted((HERE / "blueprints").glob("*.yaml"))]
        return outputs


setup(cmdclass={"build_py": BuildWithBlueprints})
