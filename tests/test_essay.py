"""The essay, the README and docs/: tables rendered from results/, figures that exist, numbers with a source."""

import json
import re

import pytest
from conftest import REPO

from fedmnist.studies import cited, report

ESSAY = REPO / "ensayo_aprendizaje_federado.md"
DECIMAL = r"(?<![\w.])\d+[.,]\d+(?![\w.])"
SETTING = re.compile(r"(?<![\w.])(?:α|β|μ|z|S|S₀|C|E|B|K|R|f|λ|γ|η|η_C|δ|q|r|M|τ|σ|σ_b) = (-?\d+(?:\.\d+)?)")
VERSION = re.compile(r"(?:Flower|flwr|Python|TensorFlow|Keras|dp-accounting) \d+(?:\.\d+)+|§\d+(?:\.\d+)*")
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
    assert {
        "una_ronda_ajustada",
        "fedprox_optimizador",
        "robustez_ajustada",
        "deriva_completa",
        "privacidad",
        "fuga",
    } <= set(names)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_table_is_the_one_rendered_from_results(document):
    assert report.stale_tables(document.read_text(), document) == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_cited_number_is_the_quantity_it_names(document):
    assert cited.stale(document.read_text(), document) == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_decimal_number_in_the_prose_is_cited_or_a_setting_of_a_run(document):
    """A measured decimal cites its JSON key; what is left are settings (μ = 0.01) that a run recorded."""
    left = VERSION.sub("", SETTING.sub("", prose(cited.CITED.sub("", document.read_text()))))
    assert re.findall(DECIMAL, left) == [], "cite each with NUMBER<!-- FILE.json#/POINTER --> (studies/cited.py)"
    known = json_numbers()
    settings = [m.group(1) for m in SETTING.finditer(prose(document.read_text()))]
    assert sorted({s for s in settings if "." in s and s not in known}) == [], "settings no run in results/ used"


def test_a_cited_number_edited_by_hand_is_caught(essay):
    match = next(cited.CITED.finditer(essay))
    edited = essay[: match.start()] + "1" + essay[match.start() :]
    assert len(cited.stale(edited, ESSAY)) == 1 and cited.render(edited, ESSAY) == essay


def test_a_citation_of_nothing_names_itself():
    with pytest.raises(KeyError, match="semillas.json#/one_shot/no_such_rule"):
        cited.render("98.03<!-- semillas.json#/one_shot/no_such_rule -->", ESSAY)
    with pytest.raises(KeyError, match="not in results/"):
        cited.render("1.0<!-- ../pyproject.json#/version -->", ESSAY)
    with pytest.raises(KeyError, match="cannot be written"):
        cited.render("98.03<!-- semillas.json#/one_shot/fedavg -->", ESSAY)


def test_a_fraction_is_cited_as_a_percent():
    value = json.loads((REPO / "results" / "resultados.json").read_text())["methods"]["fedavg"]["accuracy"]
    text = "0.0<!-- resultados.json#/methods/fedavg/accuracy ×100 -->"
    assert cited.render(text, ESSAY).startswith(f"{100 * value:.1f}<!--")


def test_a_difference_is_cited_the_other_way_round():
    value = json.loads((REPO / "results" / "resultados.json").read_text())["methods"]["fedavg"]["accuracy"]
    assert cited.render("0.0<!-- resultados.json#/methods/fedavg/accuracy ×-100 -->", ESSAY).startswith(
        f"{-100 * value:.1f}<!--"
    )
    assert cited.stale(f"{100 * value:.2f}<!-- resultados.json#/methods/fedavg/accuracy ×-100 -->", ESSAY) != []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_figure_and_local_link_exists(document):
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", document.read_text())
    for target in (t for t in targets if not t.startswith("http")):
        assert (document.parent / target).exists(), target


def test_readme_is_for_the_course_the_commands_then_each_role_and_the_research_in_docs():
    readme = (REPO / "README.md").read_text()
    headings = re.findall(r"^## (.*)$", readme, flags=re.MULTILINE)
    assert len(readme.splitlines()) <= 250
    assert headings[:2] == ["Dos comandos", "El flujo de trabajo, por papel"]
    assert {m.group("name") for m in report.MARKED.finditer(readme)} == {"demo"}
    code = (REPO / "docs" / "codigo.md").read_text()
    assert {m.group("name") for m in report.MARKED.finditer(code)} == {"estrategias"}


def test_a_table_edited_by_hand_is_caught(essay):
    edited = re.sub(r"(<!-- tabla:una_ronda_ajustada -->\n(?:.*\n){2}\| FedAvg \| )\d", r"\g<1>0", essay, count=1)
    assert edited != essay and report.stale_tables(edited, ESSAY) == ["una_ronda_ajustada"]


def test_figures_are_pngs_in_results(essay):
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", essay)
    assert len(figures) >= 3
    for figure in figures:
        assert figure.startswith("results/") and figure.endswith(".png") and (REPO / figure).is_file(), figure


def test_length_and_references(essay):
    body = essay.split("\n## Referencias")[0]  # what a reader reads: a reference owed to the text costs it no words
    words = len(re.findall(r"\w+", re.sub(r"<!--.*?-->", "", prose(body))))  # a citation's source is no word
    assert 1500 <= words <= 5000, words  # seven studies, each with its setup, evidence and limits
    cited_works = [("McMahan", 2017), ("McMahan", 2018), ("Li", 2020), ("Yin", 2018), ("Blanchard", 2017)]
    cited_works += [("Hsu", 2019), ("Karimireddy", 2020), ("Bonawitz", 2017), ("Zhu", 2019), ("Baruch", 2019)]
    for author, year in cited_works:
        assert re.search(rf"{author}.*{year}", essay), author
