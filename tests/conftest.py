"""Shared fixtures: a temporary copy of the course, released once per test session."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from coursekit import assignment_ids, course  # noqa: E402


@pytest.fixture(scope="session")
def released_course(tmp_path_factory) -> Path:
    """A copy of the course with every assignment generated into release/."""
    root = course.copy_course(tmp_path_factory.mktemp("course"))
    for aid in assignment_ids():
        course.nbgrader(root, "generate_assignment", aid, "--force")
    return root
