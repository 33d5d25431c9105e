"""Issue 21.4: pyproject.toml declares exactly the third-party packages the code imports, and the
declared minimum Python is the one the code needs."""

from __future__ import annotations

import ast
import re
import sys
import tomllib

from tests.conftest import REPO_ROOT

# import name -> the distribution that provides it
DISTRIBUTION = {
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "hydra": "hydra-core",
    "pytorch_lightning": "pytorch-lightning",
}
# declared but reached through configuration, not an import statement
PLUGINS = {"hydra-submitit-launcher": "conf/hydra/launcher", "hydra-joblib-launcher": "conf/hydra/launcher"}


def imported_top_levels(folders: list[str]) -> set[str]:
    names = set()
    for folder in folders:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("itsr", "tests", "__future__")}


def configured_top_levels() -> set[str]:
    """Packages that conf/ builds objects from (`_target_: package.module.Class`), e.g. the PyOD peers."""
    targets = set()
    for path in (REPO_ROOT / "conf").rglob("*.yaml"):
        targets |= set(re.findall(r"_target_:\s*([A-Za-z_]\w*)\.", path.read_text()))
    return targets - {"itsr", "hydra_plugins"}


def declared(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", r.strip(), maxsplit=1)[0].lower() for r in requirements}


def distributions(imports: set[str]) -> set[str]:
    return {DISTRIBUTION.get(name, name).lower().replace("_", "-") for name in imports}


def test_runtime_dependencies_are_exactly_what_the_package_imports() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    imports = imported_top_levels(["itsr", "scripts"]) | configured_top_levels()
    assert "lightning_fabric" not in imports, "import it through pytorch_lightning, whose wheel carries it"
    assert distributions(imports) == declared(project["dependencies"]) - set(PLUGINS)
    for plugin, where in PLUGINS.items():
        assert plugin in declared(project["dependencies"]) and (REPO_ROOT / where).is_dir()


def test_test_dependencies_are_declared_as_extras() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime = declared(project["dependencies"])
    needed = distributions(imported_top_levels(["tests"])) - runtime
    assert needed == declared(project["optional-dependencies"]["dev"]) - {"ruff"}  # ruff: make lint


def test_the_declared_minimum_python_is_the_one_the_code_needs() -> None:
    """tomllib (tests) and the CPU torch wheel the Makefile pins exist from Python 3.11 on."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["tool"]["ruff"]["target-version"] == "py311"
    assert sys.version_info >= (3, 11)
