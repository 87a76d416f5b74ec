"""The essay, the README and docs/: tables rendered from results/, figures that exist, numbers with a source."""

import json
import re
import subprocess
import sys

import pytest
from conftest import REPO

from fedmnist.studies import cited, editorial, report

ESSAY = REPO / "ensayo_aprendizaje_federado.md"
DOCUMENTS = [ESSAY, REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.fixture(scope="module")
def essay():
    return ESSAY.read_text()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_table_is_the_one_rendered_from_results(document):
    assert report.stale_tables(document.read_text(), document) == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_cited_number_is_the_quantity_it_names(document):
    assert cited.stale(document.read_text(), document) == []


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


def test_a_table_edited_by_hand_is_caught(essay):
    edited = re.sub(r"(<!-- tabla:una_ronda_ajustada -->\n(?:.*\n){2}\| FedAvg \| )\d", r"\g<1>0", essay, count=1)
    assert edited != essay and report.stale_tables(edited, ESSAY) == ["una_ronda_ajustada"]


def test_the_readme_s_and_docs_tables_are_the_ones_their_documents_mark():
    readme = (REPO / "README.md").read_text()
    assert {m.group("name") for m in report.MARKED.finditer(readme)} == {"demo"}
    code = (REPO / "docs" / "codigo.md").read_text()
    assert {m.group("name") for m in report.MARKED.finditer(code)} == {"estrategias"}


def test_an_uncited_decimal_is_named_and_a_cited_one_or_a_setting_is_not():
    text = "FedAvg llega a 98.03<!-- x.json#/a --> con μ = 0.01 en Python 3.11, y a 97.5 sin fuente.\n| 1.5 |"
    assert editorial.uncited_decimals(text) == ["97.5"]
    assert editorial.unrecorded_settings("con μ = 0.25 y η = 0.1", {"0.10", "0.1"}) == ["0.25"]
    # a cited number after a symbol is a measurement (δ = 0.0063<!-- ... -->), not a setting to look up
    assert editorial.unrecorded_settings("con δ = 0.0063<!-- x.json#/delta --> y η_g = 0.3", {"0.30", "0.3"}) == []
    assert editorial.unrecorded_settings("con η_g = 0.25", {"0.3"}) == ["0.25"]


def test_the_readme_rules_name_what_is_wrong():
    good = "# T\n## Dos comandos\n## El flujo de trabajo, por papel\n"
    assert editorial.readme_problems(good) == []
    assert editorial.readme_problems(good + "x\n" * 300)[0].startswith("303 lines, over 250")
    assert "first sections" in editorial.readme_problems("## Otro\n")[0]


def test_the_essay_rules_name_what_is_wrong():
    short = "# Ensayo\nPocas palabras.\n![f](figura.svg)\n"
    found = editorial.essay_problems(short)
    assert found[0].startswith("missing the tables") and "words, outside 1500–5000" in found[1]
    assert "figure figura.svg is not a PNG under results/" in found and "no reference to Baruch (2019)" in found


def test_tables_check_fails_on_a_broken_editorial_rule(tmp_path):
    broken = tmp_path / "README.md"
    broken.write_text("## Otro\nFedAvg llega a 97.5 en una ronda.\n")
    done = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "tables.py"), "--check", str(broken)],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 1 and "decimal 97.5 is neither cited" in done.stdout and "first sections" in done.stdout
