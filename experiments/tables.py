"""Re-render, or check, the tables and the cited numbers that the essay and the README copy from results/.

    python experiments/tables.py --write ensayo_aprendizaje_federado.md README.md
    python experiments/tables.py --check ensayo_aprendizaje_federado.md README.md

--write replaces each marked table (<!-- tabla:NAME --> ... <!-- /tabla -->) with the one rendered
from results/, and each cited number (NUMBER<!-- FILE.json#/POINTER -->, see fedmnist/studies/cited.py) with the
value it names. --check exits non-zero, naming the table or the number, when a document's copy differs, and
naming the rule, when a document breaks one of the editorial rules (fedmnist/studies/editorial.py: every decimal
cited or a recorded setting, the README's length and opening, the essay's tables, figures, length and
references). `make test` runs --check, so CI does.
"""

import argparse
import sys
from pathlib import Path

from fedmnist.files import write_text_atomically
from fedmnist.studies import cited, editorial
from fedmnist.studies.report import MARKED, render_document, stale_tables


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the marked tables in place")
    action.add_argument("--check", action="store_true", help="fail if a marked table differs from results/")
    parser.add_argument("documents", type=Path, nargs="+")
    args = parser.parse_args(argv)
    failed = False
    known = editorial.recorded_numbers() if args.check else None
    for path in args.documents:
        try:
            text = path.read_text()
            if args.write:
                write_text_atomically(path, render_document(text, path))
                counts = f"{len(MARKED.findall(text))} tables and {len(cited.CITED.findall(text))} cited numbers"
                print(f"{path}: {counts} rendered from results/")
            elif stale := [*(f"table {name}" for name in stale_tables(text, path)), *cited.stale(text, path)]:
                fix = f"run python experiments/tables.py --write {path}"
                print(f"{path}: differs from results/ in {'; '.join(stale)}; {fix}")
                failed = True
            if args.check and (broken := editorial.problems(text, path, known)):
                print(f"{path}: " + "; ".join(broken))
                failed = True
        except (OSError, KeyError, ValueError) as err:  # ValueError: a damaged JSON file or summary
            sys.exit(f"tables.py: error: {err}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
