"""Assignment 2 grades plausible wrong answers as intended (real nbgrader autograde)."""
from __future__ import annotations

from pathlib import Path

import pytest

from wrong_submissions import assert_scores, grade_variants

AID = "a2_sovereignty_by_numbers"
NB = "sovereignty_by_numbers.ipynb"
FULL = {"a2-q11-tests": 2, "a2-q12-tests": 2, "a2-q13-tests": 1, "a2-q21-tests": 2, "a2-q22-tests": 2,
        "a2-q23-tests": 3, "a2-q24-tests": 1, "a2-q31-tests": 2, "a2-q32-tests": 2, "a2-q33-tests": 2,
        "a2-q41-tests": 2, "a2-q51-tests": 1, "a2-q52-tests": 2}

# misconception: a share of "the parliament" is taken of the MPs present (about 180), not of the 329 seats
SHARES_OF_PRESENT = '''def seat_shares(table, column):
    mps_present = 180
    return (table.groupby(column)["seats"].sum() / mps_present).sort_values(ascending=False)

list_shares = seat_shares(seats, "list_name")
'''

# the same misconception for absences: absent MPs divided by the MPs present
ABSENT_SHARE_OF_PRESENT = '''def absent_range(present_low, present_high, total_seats):
    return total_seats - present_high, total_seats - present_low

absent_low, absent_high = absent_range(present_low, present_high, TOTAL_SEATS)
absent_share_low = absent_low / present_high
absent_share_high = absent_high / present_low
'''

QUORUM_CELL = '''def quorum_for(total_seats):
    {quorum}

def quorum_met(present, total_seats):
    {met}

met_low = quorum_met(present_low, TOTAL_SEATS)
met_high = quorum_met(present_high, TOTAL_SEATS)
margin_low = present_low - quorum_for(TOTAL_SEATS)
margin_high = present_high - quorum_for(TOTAL_SEATS)
'''
# misconception: quorum is met when fewer members are absent than the quorum (right for 329 seats by luck)
ABSENCE_AGAINST_QUORUM = QUORUM_CELL.format(
    quorum="return int(total_seats) // 2 + 1",
    met="return (total_seats - present) < quorum_for(total_seats)")
# off by one: half the seats rounded (164), not more than half (165)
QUORUM_ROUNDED = QUORUM_CELL.format(
    quorum="return round(total_seats / 2)",
    met="return present >= quorum_for(total_seats)")

# hard-coded values read off the table: pass the visible checks, fail the hidden ones on toy tables
HARD_CODED_RANGE = '''def reported_range(table, measure):
    return 168.0, 180.0

present_low, present_high = reported_range(session, "mps_present_reported")
'''
HARD_CODED_BLOCS = '''def blocs_with(table, status):
    if status == "no":
        return ["Kurdistan Democratic Party",
                "Other Kurdish parties (Gorran, New Generation, KIU, Komal, CDJ)",
                "Patriotic Union of Kurdistan"]
    return ["Other Sunni lists (e.g. Iraqi Decision/Qarar)",
            "Speaker Mohammed al-Halbousi and allied Sunni MPs"]

stayed_away = blocs_with(attendance, "no")
partly_away = blocs_with(attendance, "partial")
'''

# wrong column: the initial May 2018 count (mostly empty) instead of the certified seats
WRONG_COLUMN = '''kurdish_seats = int(seats.loc[seats["community_bloc"] == "Kurdish", "seats_initial"].sum())
other_absent_low = absent_low - kurdish_seats
other_absent_high = absent_high - kurdish_seats
'''

WRONG = {
    # Question 1.2 checks only how the function is used, so the error costs its points once
    "shares_of_present_mps": ({"a2-q11-answer": SHARES_OF_PRESENT}, {"a2-q11-tests": 0}),
    "absent_share_of_present": ({"a2-q22-answer": ABSENT_SHARE_OF_PRESENT}, {"a2-q22-tests": 0}),
    "absence_against_quorum": ({"a2-q23-answer": ABSENCE_AGAINST_QUORUM}, {"a2-q23-tests": 0}),
    "quorum_rounded_down": ({"a2-q23-answer": QUORUM_ROUNDED}, {"a2-q23-tests": 0}),
    "hard_coded": ({"a2-q21-answer": HARD_CODED_RANGE, "a2-q31-answer": HARD_CODED_BLOCS},
                   {"a2-q21-tests": 0, "a2-q31-tests": 0}),
    # plus a partly right multiple choice (misses the flagged single sources)
    "wrong_column_and_partial_choice": ({"a2-q32-answer": WRONG_COLUMN,
                                         "a2-q33-answer": 'attendance_choices = "ac"\n'},
                                        {"a2-q32-tests": 0, "a2-q33-tests": 0}),
    # the same letter for every single-answer question scores nothing: the keys differ
    "same_letter_everywhere": ({"a2-q13-answer": 'bloc_label_choice = "b"\n',
                                "a2-q24-answer": 'disputed_choice = "b"\n',
                                "a2-q51-answer": 'binding_choice = "b"\n'},
                               {"a2-q13-tests": 0, "a2-q24-tests": 0, "a2-q51-tests": 0}),
}


@pytest.fixture(scope="module")
def graded(released_course: Path, tmp_path_factory) -> Path:
    return grade_variants(released_course, tmp_path_factory.mktemp("a2_wrong"), AID, NB, WRONG)


def test_full_marks_add_up():
    assert sum(FULL.values()) == 24


@pytest.mark.parametrize("student", list(WRONG))
def test_wrong_submission_scores_as_intended(graded: Path, student: str):
    assert_scores(graded, AID, student, FULL, WRONG[student][1])
