"""The package's structure: no import cycle, and the layers of docs/architecture.md."""

from __future__ import annotations

import grimp
import pytest


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("nnet")


def test_no_module_imports_itself_back(graph):
    """For every import a -> b inside nnet, no chain of imports leads from b back to a."""
    cycles = []
    for a in sorted(graph.modules):
        for b in sorted(graph.find_modules_directly_imported_by(a)):
            back = graph.find_shortest_chain(importer=b, imported=a)
            if back is not None:
                cycles.append((a, *back))
    assert cycles == []


def test_the_notes_mathematics_imports_nothing_above_it(graph):
    core = {m for m in graph.modules if m.startswith("nnet.core")}
    above = {m for m in graph.modules if m.startswith(("nnet.", "nnet")) and m not in core}
    above -= {"nnet", "nnet.errors", "nnet.version", "nnet.fileio"}
    imported = set().union(*(graph.find_modules_directly_imported_by(m) for m in core))
    assert imported & above == set()
