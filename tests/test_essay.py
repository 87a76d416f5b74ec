"""The essay, the README and docs/: tables rendered from results/, figures that exist, numbers with a source."""

import json
import re

import pytest

from conftest import REPO
from fedmnist import report

ESSAY = REPO / "ensayo_aprendizaje_federado.md"
DOCUMENTS = [ESSAY, REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.fixture(scope="module")
def essay():
    return ESSAY.read_text()


def prose(text):
    """A document without its headings, tables, code (blocks and spans), formulas and link targets."""
    text = report.MARKED.sub("", text)
    text = re.sub(r"^#.*$", "", text, flags=re.MULTILINE)
    text = re.sub(r"```.*?```|\$\$.*?\$\$|\$[^$\n]+\$|\]\([^)]*\)", "", text, flags=re.DOTALL)
    text = re.sub(r"^\|.*\|$", "", text, flags=re.MULTILINE)
    return re.sub(r"`[^`\n]+`", "", text)


def json_numbers():
    """Every number stored under results/, as a fraction and as a percent, at 1 and 2 decimals."""
    found = set()

    def walk(value):
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            for v in (value, 100 * value):
                found.update({f"{v:.2f}", f"{v:.1f}", f"{v:.0f}"})
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for path in (REPO / "results").rglob("*.json"):
        walk(json.loads(path.read_text()))
    return found


def test_essay_has_its_tables(essay):
    names = [m.group("name") for m in report.MARKED.finditer(essay)]
    assert {"una_ronda", "robustez", "rondas"} <= set(names)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_table_is_the_one_rendered_from_results(document):
    assert report.stale_tables(document.read_text(), document) == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_decimal_number_in_the_prose_comes_from_results(document):
    known = json_numbers()
    numbers = re.findall(r"(?<![\w.])\d+[.,]\d+(?![\w.])", prose(document.read_text()))
    unsourced = sorted({n for n in numbers if n.replace(",", ".") not in known})
    assert unsourced == [], f"numbers with no source in results/*.json: {unsourced}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_figure_and_local_link_exists(document):
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", document.read_text())
    for target in (t for t in targets if not t.startswith("http")):
        assert (document.parent / target).exists(), target


def test_readme_is_a_map_with_the_commands_first_and_the_code_map_near_the_top():
    readme = (REPO / "README.md").read_text()
    headings = re.findall(r"^## (.*)$", readme, flags=re.MULTILINE)
    assert len(readme.splitlines()) <= 250
    assert headings[:2] == ["Dos comandos", "Mapa del código"]
    assert {"demo", "estrategias", "deriva", "flower"} <= {m.group("name") for m in report.MARKED.finditer(readme)}


def test_a_table_edited_by_hand_is_caught(essay):
    edited = re.sub(r"(<!-- tabla:una_ronda -->\n(?:.*\n){2}\| FedAvg \| )\d", r"\g<1>0", essay, count=1)
    assert edited != essay and report.stale_tables(edited, ESSAY) == ["una_ronda"]


def test_figures_are_pngs_in_results(essay):
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", essay)
    assert len(figures) >= 3
    for figure in figures:
        assert figure.startswith("results/") and figure.endswith(".png") and (REPO / figure).is_file(), figure


def test_length_and_references(essay):
    words = len(re.findall(r"\w+", prose(essay)))
    assert 1500 <= words <= 3000, words
    for author, year in (("McMahan", 2017), ("Li", 2020), ("Yin", 2018), ("Blanchard", 2017), ("Hsu", 2019)):
        assert re.search(rf"{author}.*{year}", essay), author
