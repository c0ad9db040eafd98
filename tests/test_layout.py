"""The layout rules of SPEC section 2, checked on the source tree.

(a) the core imports with Avalanche and learn2learn blocked; (b) no module imports across the
allowed boundaries (read with ``ast``, so imports inside functions count too); (c) every module
of ``bioplastic/`` and ``strategies/`` stays under ``MAX_LINES`` lines.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_LINES = 600
CORE_FORBIDDEN = (
    "bioplastic.experiments",
    "bioplastic.cli",
    "strategies",
    "avalanche",
    "learn2learn",
)
STRATEGIES_FORBIDDEN = ("bioplastic.experiments", "bioplastic.cli")
NOT_CORE = ("bioplastic/experiments/", "bioplastic/cli/")


def _files(package: str) -> list[pathlib.Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _rel(path: pathlib.Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _core_files() -> list[pathlib.Path]:
    return [p for p in _files("bioplastic") if not _rel(p).startswith(NOT_CORE)]


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: pathlib.Path) -> set[str]:
    """Absolute names of every module ``path`` imports, relative imports resolved."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            # `from bioplastic import experiments` imports a module, not a name.
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _breaks(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def test_the_core_imports_without_avalanche_and_learn2learn():
    modules = [_module_name(p) for p in _core_files()]
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("avalanche", "learn2learn"):
                    raise ImportError(f"{{name}} is blocked in this test")
                return None

        sys.meta_path.insert(0, Block())
        for name in {modules!r}:
            importlib.import_module(name)
        assert not any(m.split(".")[0] in ("avalanche", "learn2learn") for m in sys.modules)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(modules) > 10  # the walk found the core


def test_imports_respect_the_layering():
    broken = [
        f"{_rel(path)} imports {name}"
        for path in _core_files()
        for name in sorted(_imported(path))
        if _breaks(name, CORE_FORBIDDEN)
    ]
    broken += [
        f"{_rel(path)} imports {name}"
        for path in _files("strategies")
        for name in sorted(_imported(path))
        if _breaks(name, STRATEGIES_FORBIDDEN)
    ]
    assert not broken, "\n".join(broken)


def test_the_import_walk_sees_relative_and_nested_imports(tmp_path, monkeypatch):
    # The rule check above is only as good as _imported: make sure it cannot miss an import.
    package = tmp_path / "bioplastic" / "sub"
    package.mkdir(parents=True)
    module = package / "mod.py"
    module.write_text("def f():\n    from ..experiments import stream\n    import avalanche.core\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    names = _imported(module)
    assert "bioplastic.experiments.stream" in names and "avalanche.core" in names
    assert _breaks("bioplastic.experiments", CORE_FORBIDDEN)
    assert not _breaks("bioplastic.experimentsx", CORE_FORBIDDEN)


def _too_long() -> list[str]:
    files = _files("bioplastic") + _files("strategies")
    counts = {_rel(p): len(p.read_text().splitlines()) for p in files}
    return [f"{name}: {n} lines" for name, n in counts.items() if n >= MAX_LINES]


def test_every_module_is_under_the_line_limit():
    assert not _too_long(), "\n".join(_too_long())
