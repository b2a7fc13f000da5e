"""The book's pages: links that resolve, and the operations table that matches the course's contract."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
CONTRACT = BOOK / "contract.md"  # the course's contract, in the book
SIGNATURE = re.compile(r"`(\w+)\(([^`]*)\)`")


def table_signatures(markdown: str) -> list[tuple[str, str]]:
    """(function, parameters) of every signature in the operations table (rows starting with `| op |`)."""
    rows = [line for line in markdown.splitlines() if re.match(r"\|\s*[a-z]+\s*\|\s*`\w+_\w+\(", line)]
    return [(m.group(1), re.sub(r"\s+", " ", m.group(2))) for row in rows for m in SIGNATURE.finditer(row)]


def test_operations_table_matches_the_contract():
    contract = table_signatures(CONTRACT.read_text(encoding="utf-8"))
    book = table_signatures((BOOK / "conventions.md").read_text(encoding="utf-8"))
    assert len(contract) >= 16, "the contract's table was not found"
    assert book == contract


def test_the_contract_table_is_the_opspec_registry():
    """book/contract.md and llmc_kernels.opspec name the same functions with the same arguments."""
    opspec = pytest.importorskip("llmc_kernels.opspec")
    for name, params in table_signatures(CONTRACT.read_text(encoding="utf-8")):
        written = [p.strip() for p in re.sub(r"\[.*?\]| or None", "", params).split(",")]
        assert tuple(written) == opspec.function(name)[1].arg_names, name


def test_operations_table_names_the_package_ops():
    ops = pytest.importorskip("llmc_kernels.ops")
    names = {name for name, _ in table_signatures((BOOK / "conventions.md").read_text(encoding="utf-8"))}
    assert names and names <= set(ops.__all__), sorted(names - set(ops.__all__))


def _local_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return [
        target
        for target in re.findall(r"\]\(([^)\s]+)\)", text)
        if not re.match(r"[a-z]+:", target) and not target.startswith("#")
    ]


def test_relative_links_resolve():
    pages = sorted(BOOK.glob("*.md")) + [ROOT / "README.md"]
    links = [(page, target) for page in pages for target in _local_links(page)]
    assert len(links) >= 3, "no relative links found: is the link pattern still right?"
    for page, target in links:
        assert (page.parent / target.split("#")[0]).exists(), f"{page.name} links to missing {target}"
