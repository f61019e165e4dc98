"""WordNet glosses labelled by lexicographer file: a sentence-classification set on disk.

Every synset line of WordNet's data.noun (Princeton WordNet 3.0, Debian's wordnet-base)
holds its lexicographer file number (noun.animal, noun.artifact, ...) and its gloss: a
definition, then example sentences in quotes. The definition is the text and the lexname
its label, so "a domesticated carnivorous mammal ..." is noun.animal. Read with the
standard library from /usr/share/wordnet (`apt-get install wordnet-base`) or from
`make corpus`'s unpacked copy under ~/.cache/kdrun/corpora ($KDRUN_CORPUS_DIR overrides).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

WORDNET_MISSING = ("data=wordnet needs WordNet's dictionary files: apt-get install wordnet-base, "
                   "or `make corpus` (unpacks the Debian package into ~/.cache/kdrun/corpora), or "
                   "give data.root=<folder with data.noun>, or use data=sentences data.path=<jsonl>")
DEB_DATA = Path("wordnet-deb/usr/share/wordnet")

# lexnames(5WN): the lexicographer file of each number in a synset line
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event",
    "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object",
    "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
    "verb.body", "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl")


@dataclass(frozen=True)
class Gloss:
    offset: int      # the synset's byte offset in data.noun: a stable id
    lemma: str       # the synset's first word ("dog")
    lexname: str     # its lexicographer file ("noun.animal")
    text: str        # the definition, without the quoted examples


def find_wordnet(root: str | None = None) -> Path:
    """The folder holding data.noun: `root`, else the system's, else make corpus's copy."""
    corpora = Path(os.environ.get("KDRUN_CORPUS_DIR", "~/.cache/kdrun/corpora")).expanduser()
    places = [Path(root).expanduser()] if root else [Path("/usr/share/wordnet"), corpora / DEB_DATA]
    for place in places:
        if (place / "data.noun").is_file():
            return place
    where = f"data.root={root} has no data.noun; " if root else ""
    raise FileNotFoundError(where + WORDNET_MISSING)


def fingerprint(folder: Path) -> str:
    return hashlib.sha256((folder / "data.noun").read_bytes()).hexdigest()[:20]


def read_glosses(folder: Path) -> list[Gloss]:
    """Every noun synset with a non-empty definition, in file order."""
    glosses = []
    with open(folder / "data.noun", encoding="utf-8") as f:
        for line in f:
            if line.startswith("  ") or "|" not in line:   # the license header
                continue
            head, gloss = line.split("|", 1)
            fields = head.split()
            definition = gloss.split('; "', 1)[0].strip().rstrip(";").strip()
            if definition:
                glosses.append(Gloss(int(fields[0]), fields[4].replace("_", " "),
                                     LEXNAMES[int(fields[1])], definition))
    return glosses
