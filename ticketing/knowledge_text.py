"""Chinese text into search terms for the knowledge base (R7.2): one segmentation for what is stored
and for what is asked, so both databases index the same words and a question finds its entry.

- jieba segments, with the city's own dictionary (config/knowledge/dictionary.yaml): place and unit
  names kept whole, synonyms and abbreviations (住房公积金 → 公积金, 房本 → 不动产权证) read as one word,
  stopwords (请问, 怎么 ...) dropped;
- the pinyin of each pair of neighbouring characters ("py" + syllables, e.g. pygongji) is added for
  the question and its variants, so a homophone typo (公基金, 醫保 typed by ear) still meets its entry.

Terms are lowercase runs of letters and digits only, space-separated: SQLite's FTS5 (unicode61) and
PostgreSQL's array_to_tsvector then hold exactly the same terms.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

PINYIN_PREFIX = "py"
PINYIN_WEIGHT = 0.35  # a sound-alike pair says less than a word
_TERM = re.compile(r"[^\W_]+")
_HAN = re.compile(r"[\u3400-\u9fff]")
_BLOCK_BREAK = re.compile(r"[^\u4e00-\u9fd5a-zA-Z0-9+#&._%\-]+")  # jieba's own block boundary (re_han_default)


def _han(ch: str) -> bool:
    return bool(_HAN.match(ch))


@dataclass
class Vocabulary:
    words: list[str] = field(default_factory=list)
    canonical: dict[str, str] = field(default_factory=dict)  # synonym → the word the index keeps
    stopwords: frozenset[str] = frozenset()
    topic_stopwords: frozenset[str] = frozenset()  # words of every case's text (市民, 反映): no hot topic
    fingerprint: str = ""  # of the file: terms made from another dictionary are made again

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        if not path.exists():
            return cls()
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text) or {}
        canonical: dict[str, str] = {}
        for group in raw.get("synonyms") or []:
            head = str(group[0]).lower()
            for word in group:
                canonical.setdefault(str(word).lower(), head)
        return cls(words=[str(w) for w in raw.get("words") or []], canonical=canonical,
                   stopwords=frozenset(str(w) for w in raw.get("stopwords") or []),
                   topic_stopwords=frozenset(str(w).lower() for w in raw.get("topic_stopwords") or []),
                   fingerprint=hashlib.blake2b(text.encode(), digest_size=6).hexdigest())


class Segmenter:
    """Turns text into index terms. Build once per vocabulary (jieba's dictionary takes ~1 s)."""

    def __init__(self, vocabulary: Vocabulary):
        import jieba

        jieba.setLogLevel(logging.WARNING)
        self.vocabulary = vocabulary
        self._jieba = jieba.Tokenizer()
        for word in list(vocabulary.words) + list(vocabulary.canonical):
            if len(word) > 1:
                self._jieba.add_word(word, freq=200000)
        self._pinyin = lru_cache(maxsize=65536)(self._pinyin_of)
        self._chunk_tokens = lru_cache(maxsize=65536)(self._cut)

    @staticmethod
    def _pinyin_of(ch: str) -> str:
        from pypinyin import lazy_pinyin

        return "".join(lazy_pinyin(ch))

    def _tokens(self, text: str) -> list[str]:
        out: list[str] = []
        for chunk in _BLOCK_BREAK.split(text.lower()):
            if chunk:
                out.extend(self._chunk_tokens(chunk))
        return out

    def _cut(self, chunk: str) -> tuple[str, ...]:
        # jieba cuts each run of these characters on its own: cutting (and caching) per run is the same
        return tuple(t for t in self._jieba.cut_for_search(chunk) if t.strip())

    def words(self, text: str) -> list[str]:
        """Index words: synonyms as their head word, no stopwords, no lone characters that are not
        a known word (一 个 字 matches everything)."""
        out = []
        canonical, stop = self.vocabulary.canonical, self.vocabulary.stopwords
        for token in self._tokens(text):
            if token in stop:
                continue
            token = canonical.get(token, token)
            for term in _TERM.findall(token):
                if len(term) > 1 or term in canonical.values() or not _han(term):
                    out.append(term)
        return out

    def pinyin_pairs(self, text: str) -> list[str]:
        """Sound of each pair of neighbouring Chinese characters, stopwords taken out first."""
        runs: list[str] = []
        current = ""
        for token in self._tokens(text):
            if token in self.vocabulary.stopwords or not all(_han(c) for c in token):
                if current:
                    runs.append(current)
                current = ""
                continue
            current += token
        if current:
            runs.append(current)
        out = []
        for run in runs:
            for a, b in zip(run, run[1:], strict=False):
                out.append(PINYIN_PREFIX + self._pinyin(a) + self._pinyin(b))
        return out

    def index_fields(self, question: str, variants: Iterable[str], keywords: str, answer: str) -> tuple[str, str]:
        """(terms of the question side, terms of the answer), each a space-separated string."""
        asked = " ".join([question, *variants])
        head = self.words(asked + " " + keywords) + self.pinyin_pairs(asked)
        return " ".join(head), " ".join(self.words(answer))

    def query(self, text: str) -> dict[str, float]:
        """Terms of a citizen's question with their weight."""
        weights: dict[str, float] = {}
        for term in self.words(text):
            weights[term] = 1.0
        for term in self.pinyin_pairs(text):
            weights.setdefault(term, PINYIN_WEIGHT)
        return weights


_segmenters: dict[Path, Segmenter] = {}


def segmenter_for(config_dir: Path) -> Segmenter:
    """The segmenter of an install's config/ (built once per process)."""
    path = (Path(config_dir) / "knowledge" / "dictionary.yaml").resolve()
    if path not in _segmenters:
        _segmenters[path] = Segmenter(Vocabulary.load(path))
    return _segmenters[path]
