"""Numbers in prose that cite the quantity they are: rendered from, and checked against, results/*.json.

A document writes a measured number followed by an HTML comment (invisible once rendered) naming its source,
a file under results/ and an RFC 6901 JSON pointer into it:

    FedAvg reaches 98.03 ± 0.06<!-- semillas.json#/one_shot/fedavg --> in one round.

The pointer names a number, or a {"mean", "std"} cell written as "mean ± std"; " ×100" after the pointer
writes a fraction as a percent (`0.9589` as 95.89<!-- FILE#/POINTER ×100 -->), and " ×-1" (or " ×-100")
writes a difference the other way round (B − A where the source holds A − B). The number of decimals is
the writer's choice and is kept; the value is the source's. `render` rewrites every cited number from
results/, `stale` names those whose copy differs. Being present somewhere in results/ is not enough: a cited
number must be the quantity its pointer names.
"""

import json
import re

from fedmnist.defaults import RESULTS_DIR

NUMBER = r"-?\d+(?:\.\d+)?"
CITED = re.compile(
    rf"(?P<written>{NUMBER}(?: ± {NUMBER})?)"
    r"<!-- (?P<file>[\w./-]+\.json)#(?P<pointer>/.*?)(?: ×(?P<scale>-?100|-1))? -->"
)


def resolve(file, pointer, source="document"):
    """The value at `pointer` in results/`file`; KeyError naming the document and the citation if absent."""
    path = (RESULTS_DIR / file).resolve()
    if RESULTS_DIR.resolve() not in path.parents or not path.is_file():
        raise KeyError(f"{source}: cites {file}, which is not in results/")
    value = json.loads(path.read_text())
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        try:
            value = value[int(token)] if isinstance(value, list) else value[token]
        except (KeyError, IndexError, ValueError, TypeError):
            raise KeyError(f"{source}: {file}#{pointer} names nothing in results/ (no {token!r})") from None
    return value


def decimals(written):
    return len(written.partition(".")[2])


def formatted(value, written, where, scale=1):
    """`value` × `scale` written with the decimals of `written` ("m ± s" for a mean/std cell)."""
    parts = written.split(" ± ")
    if isinstance(value, dict) and {"mean", "std"} <= value.keys() and len(parts) == 2:
        return f"{scale * value['mean']:.{decimals(parts[0])}f} ± {scale * value['std']:.{decimals(parts[1])}f}"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and len(parts) == 1:
        return f"{scale * value:.{decimals(written)}f}"
    raise KeyError(f"{where} is {value!r}, which cannot be written as {written!r}")


def current(match, source):
    where = f"{source}: {match['file']}#{match['pointer']}"
    scale = int(match["scale"]) if match["scale"] else 1
    return formatted(resolve(match["file"], match["pointer"], source), match["written"], where, scale)


def render(text, source):
    """The text with every cited number rewritten from results/."""
    return CITED.sub(lambda m: current(m, source) + m.group(0)[len(m["written"]) :], text)


def stale(text, source):
    """'written ≠ current (file#pointer)' for every cited number whose copy differs from results/."""
    return [
        f"{m['written']} ≠ {now} ({m['file']}#{m['pointer']})"
        for m in CITED.finditer(text)
        if (now := current(m, source)) != m["written"]
    ]
