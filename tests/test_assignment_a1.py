"""Assignment 1 grades plausible wrong answers as intended (real nbgrader autograde)."""
from __future__ import annotations

from pathlib import Path

import pytest

from wrong_submissions import assert_scores, grade_variants

AID = "a1_sourcing_close_reading"
NB = "sourcing_and_close_reading.ipynb"
FULL = {"a1-q11-tests": 1, "a1-q12-tests": 2, "a1-q21-tests": 2, "a1-q22-tests": 2, "a1-q23-tests": 2,
        "a1-q24-tests": 2, "a1-q25-tests": 2, "a1-q31-tests": 1, "a1-q32-tests": 2}

BACK_MATTER_COUNTED = '''BACK_MATTER = ["author note", "photo credit", "publisher note"]

def body_word_counts(table):
    return table.set_index("paragraph")["text"].str.split().str.len()

word_counts = body_word_counts(paragraphs)
'''

HARD_CODED_ROLES = '''def role_counts(table):
    return pd.Series({"recommendation": 5, "claim": 5, "evidence": 2, "framing": 1,
                      "thesis": 1, "background": 1, "transition": 1, "conclusion": 1})

roles = role_counts(paragraphs)
'''

HARD_CODED_SHARE = "recommendation_share = 0.35\n"

PARAGRAPHS_NOT_MATCHES = '''def actor_mentions(table):
    body = table[~table["role"].isin(BACK_MATTER)]
    return pd.Series({actor: int(body["text"].str.contains(pattern).sum())
                      for actor, pattern in ACTOR_PATTERNS.items()})

mentions = actor_mentions(paragraphs)
'''

UNLABELLED_FIGURE = '''fig, ax = plt.subplots()
ax.bar(word_counts.index, word_counts.values)
plt.show()
'''

WRONG = {
    # misconception: the publisher's and author's notes are part of the argument
    "back_matter": ({"a1-q21-answer": BACK_MATTER_COUNTED}, {"a1-q21-tests": 0}),
    # hard-coded values that pass the visible checks but not the hidden ones
    "hard_coded": ({"a1-q22-answer": HARD_CODED_ROLES, "a1-q23-answer": HARD_CODED_SHARE},
                   {"a1-q22-tests": 0, "a1-q23-tests": 0}),
    # counts paragraphs that mention an actor instead of mentions
    "paragraphs_not_matches": ({"a1-q24-answer": PARAGRAPHS_NOT_MATCHES}, {"a1-q24-tests": 0}),
    # partly right multiple choice (misses the publisher's note) and a chart with no title or labels
    "partial_choice_and_bare_chart": ({"a1-q12-answer": 'author_choices = "ac"\n',
                                       "a1-q25-answer": UNLABELLED_FIGURE},
                                      {"a1-q12-tests": 0, "a1-q25-tests": 0}),
}


@pytest.fixture(scope="module")
def graded(released_course: Path, tmp_path_factory) -> Path:
    return grade_variants(released_course, tmp_path_factory.mktemp("a1_wrong"), AID, NB, WRONG)


@pytest.mark.parametrize("student", list(WRONG))
def test_wrong_submission_scores_as_intended(graded: Path, student: str):
    assert_scores(graded, AID, student, FULL, WRONG[student][1])
