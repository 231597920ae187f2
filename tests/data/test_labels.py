"""Data labels map to model outputs by name, by index for integers, and fail loudly otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.data.labels import match_labels
from workbench.errors import DataError


def test_names_match_case_insensitively_in_any_order():
    assert match_labels(["NEGATIVE", "POSITIVE"], [" positive", "Negative "]) == [1, 0]
    assert match_labels(["neg", "neu", "pos"], ["pos", "neg", "neu"]) == [2, 0, 1]


def test_permutation_reorders_real_logits_to_data_order():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 3))  # model order: neg, neu, pos
    data = ["pos", "neg", "neu"]
    perm = match_labels(["neg", "neu", "pos"], data)
    reordered = logits[:, perm]
    model_pred = np.array(["neg", "neu", "pos"])[logits.argmax(1)]
    assert (np.array(data)[reordered.argmax(1)] == model_pred).all()


def test_integer_data_labels_index_default_label_names():
    assert match_labels(["LABEL_0", "LABEL_1", "LABEL_2"], ["2", "0", "1"]) == [2, 0, 1]
    assert match_labels(["label_1", "label_0"], ["0", "1"]) == [1, 0]  # the number in the name


def test_integer_labels_on_both_sides_match_by_name_first_then_index():
    assert match_labels(["1", "2"], ["2", "1"]) == [1, 0]  # names match: 1-star, 2-star
    assert match_labels(["10", "20", "30"], ["0", "2"]) == [0, 2]  # no name match: by index


def test_model_may_have_more_outputs_than_the_data_has_labels():
    assert match_labels(["neg", "neu", "pos"], ["pos", "neg"]) == [2, 0]


@pytest.mark.parametrize(
    ("model", "data", "needle"),
    [
        (["negative", "positive"], ["0", "1"], "no single output for \\['0', '1'\\]"),
        (["neg", "pos"], ["neg", "pos", "neu"], "no single output for \\['neu'\\]"),
        (["LABEL_0", "LABEL_1"], ["0", "1", "2"], "LABEL_0"),
        (["a", "b"], ["x", "X"], "more than once"),
        (["a", "b"], [], "no labels"),
    ],
)
def test_mismatches_raise_one_line_with_both_sides_and_the_fix(model, data, needle):
    with pytest.raises(DataError, match=needle) as err:
        match_labels(model, data, where="val.csv")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("val.csv: ")
    if data and "more than once" not in msg:
        assert str(model) in msg and str(data) in msg and "rename" in msg
