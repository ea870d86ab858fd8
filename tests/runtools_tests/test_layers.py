"""The layers of DESIGN.md, read from the import statements of the source.

runtools imports none of fspnet, hpo, slurm; fspnet imports neither hpo nor slurm; hpo imports
no slurm module and reaches fspnet only through its fspnet trainable (and ``train_best``'s
install step); nobody imports the old private helpers ``fspnet._io`` / ``fspnet._provenance``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The only hpo modules that may import fspnet (the trainable, and train_best's install step).
HPO_FSPNET_BRIDGES = {"hpo/trainables/_fspnet.py", "hpo/train_best.py"}
#: Command shims that import a layer above lazily, only when that command runs (``hpo-launch``).
LAZY_COMMAND_SHIMS = {"hpo/launch.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("runtools", {"fspnet", "hpo", "slurm"}), ("fspnet", {"hpo", "slurm"}), ("hpo", {"slurm"})],
)
def test_no_module_imports_from_a_layer_above(package, forbidden):
    bad = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _modules(package)
        if path.relative_to(ROOT).as_posix() not in LAZY_COMMAND_SHIMS
        for name in sorted(_imports(path))
        if _top(name) in forbidden
    ]
    assert not bad, "imports from a layer above:\n" + "\n".join(bad)


def test_hpo_reaches_fspnet_only_through_the_trainable():
    bad = [
        f"{rel}: {name}"
        for path in _modules("hpo")
        if (rel := path.relative_to(ROOT).as_posix()) not in HPO_FSPNET_BRIDGES
        for name in sorted(_imports(path))
        if _top(name) == "fspnet"
    ]
    assert not bad, "hpo imports fspnet outside its trainable:\n" + "\n".join(bad)


def test_the_old_private_helpers_are_gone():
    assert not (ROOT / "fspnet" / "_io.py").exists() and not (ROOT / "fspnet" / "_provenance.py").exists()
    bad = [
        f"{path.relative_to(ROOT)}: {name}"
        for folder in ("fspnet", "hpo", "slurm", "scripts", "benchmarks", "tests")
        for path in _modules(folder)
        for name in sorted(_imports(path))
        if name.startswith(("fspnet._io", "fspnet._provenance"))
    ]
    assert not bad, "use runtools.io / runtools.provenance:\n" + "\n".join(bad)
