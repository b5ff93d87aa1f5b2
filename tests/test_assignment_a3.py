"""Assignment 3 grades plausible wrong answers as intended (real nbgrader autograde)."""
from __future__ import annotations

from pathlib import Path

import pytest

from wrong_submissions import assert_scores, grade_variants

AID = "a3_proxy_politics"
NB = "mapping_proxy_politics.ipynb"
FULL = {"a3-q11-tests": 2, "a3-q12-tests": 2, "a3-q21-tests": 2, "a3-q22-tests": 2, "a3-q31-tests": 2,
        "a3-q32-tests": 2, "a3-q33-tests": 2, "a3-q41-tests": 3, "a3-q42-tests": 1, "a3-q51-tests": 2,
        "a3-q61-tests": 2, "a3-q62-tests": 2}

# misconception: an actor's ties are only the edges it starts (out-degree)
OUT_DEGREE_ONLY = '''def degree(edges):
    return edges["source_actor"].value_counts().sort_values(ascending=False)

degrees = degree(edges)
'''

# off by one: rows counted from 1, as in a spreadsheet, instead of pandas index labels
ONE_BASED_ROWS = '''about_ameri = edges[(edges["source_actor"] == "ameri") | (edges["target_actor"] == "ameri")]
supporting_rows = set(about_ameri.index + 1)
'''

# hard-coded answers read off the table: pass the visible checks, fail the hidden ones on toy tables
HARD_CODED_PAIRS = '''def patronage_pairs(edges):
    return {("irgc_qf", "kh"), ("irgc_qf", "badr"), ("iran", "aah"), ("sistani", "pmf")}

patronage = patronage_pairs(edges)
'''
HARD_CODED_RANK = '''def seat_rank(table, list_name):
    return 2

fatah_rank = seat_rank(seats, "Fatah")
'''

# off by one on distance: the starting actor counts as within two steps of itself
TWO_STEPS_WITH_SELF = '''def within_two_steps(edges, actor_id):
    first = direct_links(edges, actor_id)
    reached = set(first)
    for other in first:
        reached |= direct_links(edges, other)
    return reached

qf_two_steps = within_two_steps(edges, "irgc_qf")
'''

# misconception: any recorded tie is a cooperative one
HOSTILE_AS_COOPERATIVE = '''cooperative_edges = edges
qf_network = within_two_steps(cooperative_edges, "irgc_qf")
'''

# misconception: a tie runs only in the direction it is written
ONE_DIRECTION = '''def direct_links(edges, actor_id):
    return set(edges.loc[edges["source_actor"] == actor_id, "target_actor"])

qf_direct = direct_links(edges, "irgc_qf")
'''

# correct, but the filtered edges are renumbered from 0 (a later cell uses them consistently)
RESET_INDEX = '''cooperative_edges = edges[edges["relation"].isin(COOPERATIVE)].reset_index(drop=True)
qf_network = within_two_steps(cooperative_edges, "irgc_qf")
'''
# correct index labels, given as a list rather than a set
ROWS_AS_LIST = '''about_ameri = edges[(edges["source_actor"] == "ameri") | (edges["target_actor"] == "ameri")]
supporting_rows = list(about_ameri.index)
'''

WRONG = {
    "out_degree_only": ({"a3-q41-answer": OUT_DEGREE_ONLY}, {"a3-q41-tests": 0}),
    # plus a partly right multiple choice (misses the Pompeo statement on AAH)
    "one_based_rows_and_partial_choice": ({"a3-q61-answer": ONE_BASED_ROWS,
                                           "a3-q22-answer": 'us_account_choices = "a"\n'},
                                          {"a3-q61-tests": 0, "a3-q22-tests": 0}),
    "hard_coded": ({"a3-q21-answer": HARD_CODED_PAIRS, "a3-q62-answer": HARD_CODED_RANK},
                   {"a3-q21-tests": 0, "a3-q62-tests": 0}),
    # later cells check how the function is used, not the function again: the error costs its points once
    "two_steps_includes_self": ({"a3-q32-answer": TWO_STEPS_WITH_SELF}, {"a3-q32-tests": 0}),
    "hostile_ties_as_cooperative": ({"a3-q33-answer": HOSTILE_AS_COOPERATIVE}, {"a3-q33-tests": 0}),
    # within_two_steps is built on direct_links, so Question 3.2 fails with it; 3.3 and 5.1 do not
    "one_direction_only": ({"a3-q31-answer": ONE_DIRECTION}, {"a3-q31-tests": 0, "a3-q32-tests": 0}),
    # right answers in another shape (a renumbered filter, a list of labels, upper-case letters) keep full marks
    "right_but_differently_shaped": ({"a3-q33-answer": RESET_INDEX, "a3-q61-answer": ROWS_AS_LIST,
                                      "a3-q22-answer": 'us_account_choices = "C, A"\n'}, {}),
}


@pytest.fixture(scope="module")
def graded(released_course: Path, tmp_path_factory) -> Path:
    return grade_variants(released_course, tmp_path_factory.mktemp("a3_wrong"), AID, NB, WRONG)


def test_full_marks_add_up():
    assert sum(FULL.values()) == 24


@pytest.mark.parametrize("student", list(WRONG))
def test_wrong_submission_scores_as_intended(graded: Path, student: str):
    assert_scores(graded, AID, student, FULL, WRONG[student][1])
