"""The package's import graph: no cycle, and the architecture page's diagram is current."""

from __future__ import annotations

from .helpers import load_script


def _script():
    return load_script("docs/make_architecture.py")


def test_no_import_cycle_in_the_package() -> None:
    script = _script()
    assert not script.cycles(script.import_graph())


def test_the_cycle_check_sees_a_cycle(tmp_path) -> None:
    """Two modules importing each other (one inside a function) are reported."""
    package = tmp_path / "derainzoo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from derainzoo.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from derainzoo import a\n    return a\n")
    (package / "c.py").write_text("from derainzoo import a\n")
    script = _script()
    assert script.cycles(script.import_graph(package)) == ["derainzoo.a", "derainzoo.b"]


def test_architecture_diagram_is_current() -> None:
    script = _script()
    assert script.DIAGRAM.read_text() == script.mermaid(script.import_graph()), (
        "docs/assets/architecture.mmd is out of date: run python docs/make_architecture.py"
    )
