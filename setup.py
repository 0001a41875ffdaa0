"""Ships `mappings/` inside the wheel as `gateway/_mappings/` while the tree keeps it at the top level
(where operators and the mapping authors edit it); everything else is in pyproject.toml."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithMappings(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads ./mappings in place
        target = Path(self.build_lib) / "gateway" / "_mappings"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(ROOT / "mappings", target, ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))


setup(cmdclass={"build_py": BuildWithMappings})
