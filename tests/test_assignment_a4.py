"""Assignment 4 grades plausible wrong answers as intended (real nbgrader autograde).

Each wrong submission is the solution notebook with one or two answer cells replaced by a mistake a
student could make.  The expected per-cell scores are the design: a mistake costs the questions that
depend on it, and nothing else.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from coursekit import course
from wrong_submissions import assert_scores, grade_variants

AID = "a4_policy_memo"
NB = "policy_options_decision_memo.ipynb"
FULL = {"a4-q41-tests": 2, "a4-q42-tests": 2, "a4-q43-tests": 3, "a4-q44-tests": 2, "a4-q45-tests": 3,
        "a4-q46-tests": 2, "a4-q47-tests": 2, "a4-q48-tests": 3, "a4-q49-tests": 3, "a4-q410-tests": 2,
        "a4-q411-tests": 1}

# Misconception: only the sign of a weight matters, so weights adding up to 1.2 are accepted.
SUM_NOT_CHECKED = '''def validate_weights(weights, criteria):
    w = pd.Series(weights, dtype=float)
    if set(w.index) != set(criteria):
        raise ValueError("give exactly one weight for every criterion")
    if (w < 0).any():
        raise ValueError("weights must be non-negative")
    return w.reindex(list(criteria))

validate_weights(MEMO_WEIGHTS, CRITERIA)
'''

# Misconception: sort_values() without ascending=False ranks the worst option first, and
# top_option (correctly written as "the first of the ranking") inherits the mistake.
RANKING_ASCENDING = '''def weighted_totals(matrix, weights):
    check_scores(matrix)
    w = validate_weights(weights, matrix.columns)
    return (matrix * w).sum(axis=1).sort_values()

totals = weighted_totals(matrix, MEMO_WEIGHTS)
totals
'''

# Hard-coded value: the top option typed in after reading the ranking.
HARD_CODED_TOP = '''def top_option(matrix, weights):
    return "stay_recommit"

recommended = top_option(matrix, MEMO_WEIGHTS)
recommended
'''

# Off-by-one: the loop over criteria starts at 1 and never tries the first criterion.
OFF_BY_ONE_LOOP = '''def recommendation_flips(matrix, weights, step=0.1):
    w = validate_weights(weights, matrix.columns)
    baseline = top_option(matrix, w)
    rows = []
    for i in range(1, len(w)):
        criterion = w.index[i]
        for new_weight in (w[criterion] + step, w[criterion] - step):
            if 0 <= new_weight <= 1:
                new_top = top_option(matrix, shift_weight(w, criterion, new_weight))
                if new_top != baseline:
                    rows.append({"criterion": criterion, "new_weight": new_weight, "new_top": new_top})
    return pd.DataFrame(rows, columns=["criterion", "new_weight", "new_top"])

flips = recommendation_flips(matrix, MEMO_WEIGHTS)
flips
'''

# Wrong column: the chart varies the weight on security instead of SENSITIVITY_CRITERION.
WRONG_CRITERION_FIGURE = '''grid = np.linspace(0, 1, 21)
fig, ax = plt.subplots()
for colour, option_id in zip(OKABE_ITO, matrix.index):
    ys = [weighted_totals(matrix, shift_weight(MEMO_WEIGHTS, "security", x))[option_id] for x in grid]
    ax.plot(grid, ys, color=colour, label=option_id)
ax.set_title("Sensitivity of the weighted totals")
ax.set_xlabel("Weight")
ax.set_ylabel("Weighted total")
ax.legend()
plt.show()
'''

WRONG = {
    "sum_not_checked": ({"a4-q43-answer": SUM_NOT_CHECKED}, {"a4-q43-tests": 0}),
    "ranking_ascending": ({"a4-q45-answer": RANKING_ASCENDING},
                          {"a4-q45-tests": 0, "a4-q46-tests": 0, "a4-q48-tests": 0}),
    "hard_coded_top": ({"a4-q46-answer": HARD_CODED_TOP}, {"a4-q46-tests": 0, "a4-q48-tests": 0}),
    "off_by_one_loop": ({"a4-q48-answer": OFF_BY_ONE_LOOP}, {"a4-q48-tests": 0}),
    # a partly right choice (misses the targeted sanctions of paragraph 15) and a chart of the wrong weight
    "partial_choice_and_wrong_column": ({"a4-q41-answer": 'recommendation_choices = "ac"\n',
                                         "a4-q49-answer": WRONG_CRITERION_FIGURE},
                                        {"a4-q41-tests": 0, "a4-q49-tests": 0}),
}


@pytest.fixture(scope="module")
def graded(released_course: Path, tmp_path_factory) -> Path:
    return grade_variants(released_course, tmp_path_factory.mktemp("a4_wrong"), AID, NB, WRONG, with_solution=True)


def test_solution_earns_every_autograded_point(graded: Path):
    got = {k: v for k, v in course.grade_cells(graded, AID, "solution").items() if k in FULL}
    assert got == FULL
    assert course.scores(graded, AID)["solution"]["needs_manual_grade"], "the memo waits for a human"


@pytest.mark.parametrize("student", list(WRONG))
def test_wrong_submission_scores_as_intended(graded: Path, student: str):
    assert_scores(graded, AID, student, FULL, WRONG[student][1])


def test_memo_rubric_and_exemplar():
    """The memo's mark scheme covers the six parts and adds up; the exemplar is 400-600 words."""
    import re

    import nbformat

    from coursekit import SOURCE_DIR

    nb = nbformat.read(str(SOURCE_DIR / AID / NB), as_version=4)
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    prompt, memo = by_id["a4-q412-prompt"].source, by_id["a4-q412-answer"]
    scheme = prompt.split("=== BEGIN MARK SCHEME ===")[1].split("=== END MARK SCHEME ===")[0]
    maxima = {part: int(n) for part, n in re.findall(r"\*\*(\w[\w -]*)\*\* \(max (\d)\)", scheme)}
    assert set(maxima) == {"Problem", "Options", "Criteria and weights", "Trade-offs", "Recommendation", "Evidence"}
    assert sum(maxima.values()) == memo.metadata["nbgrader"]["points"] == 15
    exemplar = memo.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
    exemplar = exemplar.split("**To:**", 1)[1]  # leave out the note to instructors
    assert 400 <= len(exemplar.replace("*", " ").split()) <= 600
    for heading in maxima:
        assert f"**{heading}.**" in exemplar, heading
