"""Tiny helpers for writing course notebooks programmatically.

Course notebooks are the source of truth; these builders only save authors
from hand-writing nbgrader cell metadata.  Use them in a throwaway script,
then commit the ``.ipynb`` (outputs cleared).
"""
from __future__ import annotations

import textwrap

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python", "version": "3.11"}


def _src(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


def _nbgrader(grade_id: str, *, grade=False, solution=False, locked=False, points=None, task=False):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution}
    if task:
        meta["task"] = True
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def md(text: str, grade_id: str | None = None):
    """A Markdown cell; with ``grade_id`` it is read-only (locked) in nbgrader."""
    cell = new_markdown_cell(_src(text))
    if grade_id:
        cell.metadata.update(_nbgrader(grade_id, locked=True))
    return cell


def code(text: str, grade_id: str | None = None):
    """A code cell; with ``grade_id`` it is read-only (locked) in nbgrader."""
    cell = new_code_cell(_src(text))
    if grade_id:
        cell.metadata.update(_nbgrader(grade_id, locked=True))
    return cell


def answer(text: str, grade_id: str):
    """An autograded answer cell (code with ### BEGIN/END SOLUTION)."""
    cell = new_code_cell(_src(text))
    cell.metadata.update(_nbgrader(grade_id, solution=True))
    return cell


def tests(text: str, grade_id: str, points: float):
    """An autograder test cell worth ``points``."""
    cell = new_code_cell(_src(text))
    cell.metadata.update(_nbgrader(grade_id, grade=True, locked=True, points=points))
    return cell


def written(text: str, grade_id: str, points: float):
    """A manually graded Markdown answer (exemplar inside ### BEGIN/END SOLUTION)."""
    cell = new_markdown_cell(_src(text))
    cell.metadata.update(_nbgrader(grade_id, grade=True, solution=True, points=points))
    return cell


def notebook(cells, title: str | None = None):
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = dict(LANGUAGE_INFO)
    if title:
        nb.metadata["title"] = title
    return nb


def save(nb, path) -> None:
    nbformat.validate(nb)
    nbformat.write(nb, str(path))
