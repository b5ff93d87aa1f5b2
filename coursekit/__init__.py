"""Shared code for the course's tests, benchmarks and instructor tools.

Student notebooks never import this package: a released assignment folder
must work on its own.  Everything here is small and dependency-light so that
importing it costs little.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
LESSONS_DIR = ROOT / "lessons"
COURSE_DIR = ROOT / "assignments"
SOURCE_DIR = COURSE_DIR / "source"

#: Okabe & Ito (2008) colour-blind-safe palette, the course's only palette.
OKABE_ITO = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
}


def load_table(name: str):
    """Read ``data/<name>.csv`` with pandas (imported lazily)."""
    import pandas as pd

    return pd.read_csv(DATA_DIR / f"{name}.csv")


def assignment_ids() -> list[str]:
    """The assignments in teaching order (folders under assignments/source)."""
    return sorted(p.name for p in SOURCE_DIR.iterdir() if p.is_dir() and not p.name.startswith("."))


def lesson_paths() -> list[Path]:
    return sorted(LESSONS_DIR.glob("[0-9][0-9]_*.ipynb"))


def source_notebooks() -> list[Path]:
    return sorted(SOURCE_DIR.glob("*/*.ipynb"))
