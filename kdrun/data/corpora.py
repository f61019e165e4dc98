"""Text corpora for task=lm: documents (packed into one token stream) or prompt/completion
examples (one sequence each).

    source = corpus_source(cfg)      # finds the files and fingerprints them, reads nothing else
    corpus = source.read()           # Corpus(documents=[...], examples=[...])

austen: Jane Austen's six novels from Debian's r-cran-janeaustenr (MIT packaging of
public-domain texts), read from its R lazy-load database with the standard library,
so neither R nor a download at run time is needed.
text: data.path, a .jsonl file ({"text": ...} documents or {"prompt", "completion"}
examples) or any other UTF-8 file as one document.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

AUSTEN_FORMAT = 1      # bump when the paragraph joining changes (it is part of the cache key)
TEXT_FORMAT = 1
# publication order, as janeaustenr's austen_books()
AUSTEN_BOOKS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma",
                "northangerabbey", "persuasion")
JANEAUSTENR_DATA = Path("usr/lib/R/site-library/janeaustenr/data")
AUSTEN_MISSING = ("data=austen needs Jane Austen's novels: apt-get install r-cran-janeaustenr, or "
                  "`make corpus` (downloads the 1.6 MB Debian package into ~/.cache/kdrun/corpora "
                  "without installing R), or give data.root / use data=text data.path=<file>")


@dataclass
class Corpus:
    documents: list[str] = field(default_factory=list)
    examples: list[tuple[str, str]] = field(default_factory=list)   # (prompt, completion)


@dataclass(frozen=True)
class CorpusSource:
    key: str                    # how errors name the corpus, e.g. "data.path=notes.txt"
    identity: str               # changes whenever the text would: part of the token cache key
    read: Callable[[], Corpus]


def corpus_source(cfg) -> CorpusSource:
    """The corpus `cfg` (a TextDataConfig) names; ValueError naming the key when it is missing."""
    if cfg.name == "austen":
        folder = find_austen(cfg.root)
        digest = _sha256(folder / "Rdata.rdb", folder / "Rdata.rdx")
        return CorpusSource("data=austen", f"austen-v{AUSTEN_FORMAT}-{digest}",
                            lambda: Corpus(documents=read_austen(folder)))
    if cfg.name == "text":
        if not cfg.path:
            raise ValueError("data=text needs data.path=<a .txt or .jsonl file>")
        path = Path(cfg.path).expanduser()
        key = f"data.path={cfg.path}"
        if not path.is_file():
            raise ValueError(f"{key}: no such file")
        return CorpusSource(key, f"text-v{TEXT_FORMAT}-{_sha256(path)}", lambda: read_text_file(path, key))
    raise ValueError(f"data.name={cfg.name} is not a text corpus: use austen or text")


def _sha256(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:20]


# --- text files ---------------------------------------------------------------------------

def read_text_file(path: Path, key: str) -> Corpus:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{key} is not UTF-8 text (byte {e.start})") from None
    if path.suffix.lower() != ".jsonl":
        if not text.strip():
            raise ValueError(f"{key} is empty: give a file with text")
        return Corpus(documents=[text])
    corpus = Corpus()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{key}: bad JSON on line {number}: {e.msg}") from None
        if isinstance(row, dict) and isinstance(row.get("text"), str):
            corpus.documents.append(row["text"])
        elif (isinstance(row, dict) and isinstance(row.get("prompt"), str)
              and isinstance(row.get("completion"), str)):
            corpus.examples.append((row["prompt"], row["completion"]))
        else:
            raise ValueError(f'{key}: line {number} needs a string "text", or "prompt" and '
                             f'"completion"')
        if corpus.documents and corpus.examples:
            raise ValueError(f"{key}: line {number} mixes documents and prompt/completion "
                             "examples: use one kind per file")
    if not any(t.strip() for t in corpus.documents) and not corpus.examples:
        raise ValueError(f"{key} has no text: give lines like {{\"text\": \"...\"}}")
    return corpus


# --- Jane Austen (r-cran-janeaustenr) -----------------------------------------------------

def corpus_home() -> Path:
    return Path(os.environ.get("KDRUN_CORPUS_DIR") or Path.home() / ".cache" / "kdrun" / "corpora")


def austen_folders(root: Optional[str]) -> list[Path]:
    """Where the janeaustenr data folder may be: data.root alone when given, else the Debian
    install and `make corpus`'s extraction."""
    if root:
        root_path = Path(root).expanduser()
        return [root_path, root_path / JANEAUSTENR_DATA]
    return [Path("/") / JANEAUSTENR_DATA, corpus_home() / "janeaustenr-deb" / JANEAUSTENR_DATA]


def find_austen(root: Optional[str] = None) -> Path:
    for folder in austen_folders(root):
        if (folder / "Rdata.rdb").is_file() and (folder / "Rdata.rdx").is_file():
            return folder
    if root:
        raise ValueError(f"data.root={root} has no Rdata.rdb/Rdata.rdx (the janeaustenr data "
                         f"folder): {AUSTEN_MISSING}")
    raise ValueError(AUSTEN_MISSING)


def read_austen(folder: Path) -> list[str]:
    """The six novels in publication order, one document each, paragraphs unwrapped."""
    books = read_lazyload_db(folder / "Rdata")
    missing = [b for b in AUSTEN_BOOKS if b not in books]
    if missing:
        raise ValueError(f"{folder}/Rdata.rdb lacks {', '.join(missing)}: is it janeaustenr's?")
    return [join_paragraphs(books[b]) for b in AUSTEN_BOOKS]


def join_paragraphs(lines: list[str]) -> str:
    """Blank lines separate paragraphs; a paragraph's hard-wrapped lines are joined with a space
    (the wrapping would otherwise cost a newline token every ~70 characters)."""
    paragraphs, current = [], []
    for line in lines:
        line = line.strip()
        if line:
            current.append(line)
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)


def read_lazyload_db(stem: Path) -> dict[str, list[str]]:
    """Every character vector in an R lazy-load database (<stem>.rdx index, <stem>.rdb data).

    The .rdx is a compressed serialised list (variables = name -> (offset, length) in the
    .rdb, compressed = the codec); each .rdb chunk is a 4-byte big-endian length, for codecs
    2/3 a type byte, then the compressed serialisation of one object.
    """
    index = _rlist(RReader(_decompress(stem.with_suffix(".rdx").read_bytes(), 1)).read())
    variables, codec = _rlist(index["variables"]), int(index["compressed"][0])
    rdb = stem.with_suffix(".rdb").read_bytes()
    out = {}
    for name, (offset, length) in variables.items():
        value = RReader(_decompress(rdb[offset:offset + length], codec)).read()
        if isinstance(value, RVector) and value.kind == STRSXP:
            out[name] = ["" if s is None else s for s in value]
    return out


def _decompress(blob: bytes, codec: int) -> bytes:
    if blob[:2] == b"\x1f\x8b":            # an .rdx may also be plain gzip
        return gzip.decompress(blob)
    size = struct.unpack(">I", blob[:4])[0]
    body, kind = blob[4:], "Z"
    if codec in (2, 3):
        kind, body = chr(blob[4]), blob[5:]
    elif codec != 1:
        raise ValueError(f"unsupported R lazy-load compression {codec}")
    codecs = {"Z": zlib.decompress, "2": bz2.decompress, "X": lzma.decompress, "0": bytes}
    if kind not in codecs:
        raise ValueError(f"unsupported R lazy-load chunk type {kind!r}")
    raw = codecs[kind](body)
    if len(raw) != size:
        raise ValueError(f"R lazy-load chunk: {len(raw)} bytes, header says {size}")
    return raw


# R's XDR serialisation (R Internals, "Serialization formats"): just the types a lazy-load
# index and character vectors use.
SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, STRSXP, VECSXP = 1, 2, 9, 10, 13, 16, 19
NILVALUE, REFSXP = 254, 255
HAS_ATTR, HAS_TAG = 1 << 9, 1 << 10
LATIN1 = 1 << 2   # CHARSXP encoding level (flags >> 12)
NA_INTEGER = -(2 ** 31)


class RVector(list):
    """An R vector: its elements, its SEXP type and its attributes (e.g. names)."""

    def __init__(self, items, kind: int, attrs: Optional[dict] = None):
        super().__init__(items)
        self.kind, self.attrs = kind, attrs or {}


def _rlist(vector: RVector) -> dict:
    return dict(zip(vector.attrs.get("names", []), vector))


class RReader:
    def __init__(self, raw: bytes):
        if raw[:2] != b"X\n":
            raise ValueError(f"not an R XDR serialisation (starts {raw[:2]!r})")
        self.raw, self.pos, self.refs = raw, 2, []
        version = self.int()
        self.pos += 8                       # writer and minimal reader R versions
        if version == 3:                    # native encoding name
            self.pos += 4 + self.int()

    def int(self) -> int:
        value = struct.unpack_from(">i", self.raw, self.pos)[0]
        self.pos += 4
        return value

    def read(self):
        flags = self.int()
        kind = flags & 0xFF
        if kind == NILVALUE:
            return None
        if kind == REFSXP:
            ref = flags >> 8 or self.int()
            return self.refs[ref - 1]
        if kind == SYMSXP:
            name = self.read()
            self.refs.append(name)
            return name
        if kind == LISTSXP:                 # a pairlist, here only attributes: {tag: value}
            if flags & HAS_ATTR:
                self.read()                 # a pairlist's own attributes: not needed
            tag = self.read() if flags & HAS_TAG else None
            head = {tag: self.read()}
            tail = self.read()
            return {**head, **(tail or {})}
        if kind == CHARSXP:
            n = self.int()
            if n == -1:
                return None                 # NA_character_
            text = self.raw[self.pos:self.pos + n]
            self.pos += n
            return text.decode("latin-1" if (flags >> 12) & LATIN1 else "utf-8", errors="replace")
        if kind in (LGLSXP, INTSXP):
            n = self.int()
            items = struct.unpack_from(f">{n}i", self.raw, self.pos)
            self.pos += 4 * n
        elif kind in (STRSXP, VECSXP):
            n = self.int()
            items = [self.read() for _ in range(n)]
        else:
            raise ValueError(f"unsupported R object type {kind} in the serialisation")
        attrs = self.read() if flags & HAS_ATTR else None
        return RVector(items, kind, attrs)
