"""Jane Austen's six novels as passages: a second offline text domain beside the Wikipedia extracts (MemSinks'
design repeats documents of one domain inside a general corpus of another; Ghosal et al. 2025, "Memorization
Sinks", Section 5.2).

Source: Debian bookworm `r-cran-janeaustenr` 1.0.0-1 (the Project Gutenberg texts; the novels are in the public
domain, the R package is MIT). Its R lazy-load database is read with PyPI `rdata`; nothing is installed, R is
not needed. The passages are cached as JSON under `hf_memmit.utils.cache_dir()`.
"""

from __future__ import annotations

import gzip
import json
import re
import warnings
import zlib

from ..utils import atomic_write_json, cache_dir
from .debian import deb_members, deb_path

AUSTEN_PACKAGE = ("r-cran-janeaustenr", "1.0.0-1", "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
                  "pool/main/r/r-cran-janeaustenr/")
AUSTEN_LICENCE = "public domain (Project Gutenberg texts via Debian r-cran-janeaustenr 1.0.0-1, package MIT)"
NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")
_HEADING = re.compile(r"^(chapter|volume)\s+[0-9ivxlc]+\.?$", re.IGNORECASE)


def austen_novels() -> dict[str, list[str]]:
    """Each novel's lines (hard-wrapped as in the Gutenberg text), by the package's names (`NOVELS`)."""
    try:
        import rdata
    except ImportError as e:
        raise RuntimeError("reading the Austen corpus needs PyPI `rdata`: pip install 'hf_memmit[corpora]'") from e
    files = deb_members(deb_path(*AUSTEN_PACKAGE), ("janeaustenr/data/Rdata.rdx", "janeaustenr/data/Rdata.rdb"))
    rdx, rdb = (next(body for name, body in files.items() if name.endswith(end)) for end in (".rdx", ".rdb"))

    def unserialize(raw: bytes):
        with warnings.catch_warnings():  # rdata warns that a lazy-load entry has no file header: it has none
            warnings.simplefilter("ignore", UserWarning)
            return rdata.conversion.convert(rdata.parser.parse_data(raw))

    index = unserialize(gzip.decompress(rdx))["variables"]
    # each entry: (offset, length) of a 4-byte length header + zlib stream in the .rdb
    return {str(name): [str(line) for line in unserialize(zlib.decompress(rdb[int(off) + 4:int(off) + int(n)]))]
            for name, (off, n) in index.items()}


def paragraphs_by_chapter(lines: list[str]) -> list[list[str]]:
    """A novel's chapters as lists of paragraphs (wrapped lines joined); the title page before the first chapter
    heading and the headings themselves are dropped."""
    chapters: list[list[str]] = []
    current: list[str] = []
    for line in [*lines, ""]:
        text = line.strip()
        if _HEADING.match(text):
            chapters.append([])
        elif text:
            current.append(text)
        elif current:
            if chapters:
                chapters[-1].append(" ".join(current))
            current = []
    return [c for c in chapters if c]


def passages(chapter: list[str], min_words: int) -> list[str]:
    """Consecutive paragraphs joined until a passage has `min_words` words; a short tail joins the last passage."""
    out: list[str] = []
    current: list[str] = []
    for paragraph in chapter:
        current.append(paragraph)
        if sum(len(p.split()) for p in current) >= min_words:
            out.append("\n\n".join(current))
            current = []
    if current:
        if out:
            out[-1] += "\n\n" + "\n\n".join(current)
        else:
            out.append("\n\n".join(current))
    return out


def austen_passages(min_words: int = 80) -> list[str]:
    """Passages of whole paragraphs, at least `min_words` words each (a chapter shorter than that is one
    passage), in novel and reading order; deterministic, cached after the first call."""
    if type(min_words) is not int or min_words < 1:
        raise ValueError(f"min_words={min_words!r} is not supported; allowed: an integer >= 1")
    path = cache_dir() / "corpora" / f"austen-{AUSTEN_PACKAGE[1]}-passages{min_words}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    novels = austen_novels()
    out = [p for name in NOVELS for chapter in paragraphs_by_chapter(novels[name]) for p in passages(chapter, min_words)]
    atomic_write_json(path, out)
    return out


__all__ = ["AUSTEN_LICENCE", "austen_novels", "austen_passages"]
