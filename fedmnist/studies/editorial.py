"""The documents' editorial rules, checked by `experiments/tables.py --check` (which `make test`, and so CI, runs).

The test suite checks that the documents match results/: every marked table and every cited number is the one
rendered from it. These rules are about the prose itself:

- a decimal in the prose is cited to its JSON key, or is a setting of a run (μ = 0.01) that results/ recorded;
- the README stays short and opens with the course's commands and each role's steps;
- the essay keeps its tables, its PNG figures under results/, its length and its references.
"""

import json
import re

from fedmnist.defaults import RESULTS_DIR
from fedmnist.studies import cited, report

DECIMAL = re.compile(r"(?<![\w.])\d+[.,]\d+(?![\w.])")
SETTING = re.compile(r"(?<![\w.])(?:α|β|μ|z|S|S₀|C|E|B|K|R|f|λ|γ|η|η_C|η_g|δ|q|r|M|τ|σ|σ_b) = (-?\d+(?:\.\d+)?)")
VERSION = re.compile(r"(?:Flower|flwr|Python|TensorFlow|Keras|dp-accounting) \d+(?:\.\d+)+|§\d+(?:\.\d+)*")

README_LINES = 250  # a course README is read in one sitting; the research lives in docs/
README_OPENING = ["Dos comandos", "El flujo de trabajo, por papel"]
ESSAY_WORDS = (1500, 5000)  # seven studies, each with its setup, evidence and limits
ESSAY_TABLES = {
    "una_ronda_ajustada",
    "fedprox_optimizador",
    "robustez_ajustada",
    "deriva_completa",
    "privacidad",
    "fuga",
}
ESSAY_REFERENCES = [
    ("McMahan", 2017),
    ("McMahan", 2018),
    ("Li", 2020),
    ("Yin", 2018),
    ("Blanchard", 2017),
    ("Hsu", 2019),
    ("Karimireddy", 2020),
    ("Bonawitz", 2017),
    ("Zhu", 2019),
    ("Baruch", 2019),
]


def prose(text):
    """A document without its headings, tables, code (blocks and spans), formulas and link targets."""
    text = report.MARKED.sub("", text)
    text = re.sub(r"^#.*$", "", text, flags=re.MULTILINE)
    text = re.sub(r"```.*?```|\$\$.*?\$\$|\$[^$\n]+\$|\]\([^)]*\)", "", text, flags=re.DOTALL)
    text = re.sub(r"^\|.*\|$", "", text, flags=re.MULTILINE)
    return re.sub(r"`[^`\n]+`", "", text)


def recorded_numbers(results=RESULTS_DIR):
    """Every number stored under results/, as a fraction and as a percent, at 0, 1 and 2 decimals."""
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

    for path in results.rglob("*.json"):
        walk(json.loads(path.read_text()))
    return found


def uncited_decimals(text):
    """The decimals of the prose that are neither cited nor a setting (μ = 0.01) nor a version."""
    return DECIMAL.findall(VERSION.sub("", SETTING.sub("", prose(cited.CITED.sub("", text)))))


def unrecorded_settings(text, known):
    """The settings with decimals (μ = 0.01) that no run in results/ recorded (`known`: recorded_numbers())."""
    settings = SETTING.finditer(prose(cited.CITED.sub("", text)))  # a cited number is a measurement, not a setting
    return sorted({s for s in (m.group(1) for m in settings) if "." in s and s not in known})


def essay_words(text):
    """The words a reader reads: the prose before the references, without the citations' sources."""
    body = text.split("\n## Referencias")[0]
    return len(re.findall(r"\w+", re.sub(r"<!--.*?-->", "", prose(body))))


def readme_problems(text):
    problems = []
    if (lines := len(text.splitlines())) > README_LINES:
        problems.append(f"{lines} lines, over {README_LINES}: move research into docs/")
    headings = re.findall(r"^## (.*)$", text, flags=re.MULTILINE)
    if headings[: len(README_OPENING)] != README_OPENING:
        problems.append(f"the first sections must be {README_OPENING}, not {headings[: len(README_OPENING)]}")
    return problems


def essay_problems(text):
    problems = []
    if missing := ESSAY_TABLES - {m.group("name") for m in report.MARKED.finditer(text)}:
        problems.append(f"missing the tables {', '.join(sorted(missing))}")
    low, high = ESSAY_WORDS
    if not low <= (words := essay_words(text)) <= high:
        problems.append(f"{words} words, outside {low}–{high}")
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        if not (figure.startswith("results/") and figure.endswith(".png")):
            problems.append(f"figure {figure} is not a PNG under results/")
    problems += [f"no reference to {a} ({y})" for a, y in ESSAY_REFERENCES if not re.search(rf"{a}.*{y}", text)]
    return problems


def problems(text, path, known=None):
    """Every editorial rule `text` (the document at `path`) breaks, in words."""
    known = recorded_numbers() if known is None else known
    found = [
        f"decimal {d} is neither cited nor a setting; cite it (fedmnist/studies/cited.py)"
        for d in uncited_decimals(text)
    ]
    found += [f"setting {s} was used by no run in results/" for s in unrecorded_settings(text, known)]
    if path.name == "README.md":
        found += readme_problems(text)
    if path.name.startswith("ensayo"):
        found += essay_problems(text)
    return found
