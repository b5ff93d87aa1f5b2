"""The primary source ships exactly as given, and its tables agree with it."""
from __future__ import annotations

import filecmp

import pandas as pd
import pytest

from coursekit import DATA_DIR, ROOT, SOURCE_DIR

SEED = ROOT.parent / "shared" / "seed" / "oped.txt"


def paragraphs_of(text: str) -> list[str]:
    return [p.strip() for p in text.split("\n\n") if p.strip()]


@pytest.mark.skipif(not SEED.exists(), reason="the shared seed folder is not beside this checkout")
def test_oped_text_is_exactly_the_seed():
    assert (DATA_DIR / "oped.txt").read_bytes() == SEED.read_bytes()


def test_paragraph_table_matches_text():
    table = pd.read_csv(DATA_DIR / "oped_paragraphs.csv")
    paras = paragraphs_of((DATA_DIR / "oped.txt").read_text(encoding="utf-8"))
    assert list(table["paragraph"]) == list(range(1, len(paras) + 1))
    assert list(table["text"]) == paras
    assert table["role"].notna().all()
    assert set(table.loc[table["role"] == "thesis", "paragraph"]) == {2}


def test_metadata_has_what_a_citation_needs():
    meta = pd.read_csv(DATA_DIR / "oped_metadata.csv").set_index("field")["value"]
    assert meta["author"] == "Omar al-Nidawi"
    assert meta["date_published"] == "2020-01-27"
    assert meta["url"].startswith("https://www.mei.edu/")
    for field in ("title", "publisher", "citation_chicago", "citation_apa", "genre"):
        assert isinstance(meta[field], str) and meta[field].strip()


def test_assignment_data_copies_match_data_folder():
    """Data beside an assignment is a byte-identical copy of data/ (one source of truth)."""
    copies = [p for p in SOURCE_DIR.glob("*/*.csv") if (DATA_DIR / p.name).exists()]
    assert copies
    for copy in copies:
        assert filecmp.cmp(copy, DATA_DIR / copy.name, shallow=False), f"{copy} differs from data/{copy.name}"
