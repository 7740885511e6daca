import numpy as np
import pytest

from marker_excite.contract.markers import PAPER_MARKERS, PAPER_PANEL, MarkerError, MarkerPanel, Subset
from marker_excite.errors import UserInputError


def test_default_panel_is_paper_order():
    p = MarkerPanel()
    assert p.names == PAPER_MARKERS
    assert p.index("DAPI") == 0 and p.index("cxcl12-gfp") == 4
    assert p.index(5) == 4 and p.index("m3") == 2


def test_all_subsets_count_order_and_labels():
    p = MarkerPanel()
    subs = p.all_subsets()
    assert len(subs) == 31 and len(set(subs)) == 31
    assert subs[0].indices == (0,) and subs[-1].indices == (0, 1, 2, 3, 4)
    assert [len(s) for s in subs] == sorted(len(s) for s in subs)
    assert [s.label for s in subs[:7]] == ["m_1", "m_2", "m_3", "m_4", "m_5", "m_12", "m_13"]
    assert Subset((4, 0, 1), p).label == "m_125"


def test_subset_one_type_zero_based_inside_paper_notation_outside():
    s = PAPER_PANEL.parse_subset("m_125")
    assert s == Subset((0, 1, 4)) == PAPER_PANEL.parse_subset(["DAPI", "endomucin", "CXCL12-GFP"])
    assert s.indices == tuple(s) == (0, 1, 4) and s.numbers == (1, 2, 5) and len(s) == 3
    assert s.names == ("DAPI", "endomucin", "CXCL12-GFP") and s.label == str(s) == "m_125"
    assert PAPER_PANEL.parse_subset(s.label) == s and PAPER_PANEL.parse_subset(s.names) == s
    assert PAPER_PANEL.parse_subset("m_12") <= s and not s <= PAPER_PANEL.parse_subset("m_12")
    big = MarkerPanel(tuple(f"c{i}" for i in range(12)))
    assert Subset((0, 9, 11), big).label == "m_1-10-12" and big.parse_subset("m_1-10-12").indices == (0, 9, 11)


@pytest.mark.parametrize(
    "indices,needle", [((), "empty marker set"), ((1, 1), "twice"), ((5,), "outside 0..4"), ((-1,), "outside")]
)
def test_subset_refuses_bad_indices(indices, needle):
    with pytest.raises(MarkerError, match=needle):
        Subset(indices)


@pytest.mark.parametrize("text", ["DAPI,CXCL12-GFP", "1,5", "m_15", "m15", " dapi , 5 "])
def test_parse_subset_forms(text):
    assert MarkerPanel().parse_subset(text).indices == (0, 4)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("DAPI,foo", "unknown marker 'foo'"),
        ("1,1", "twice"),
        ("", "empty marker set"),
        ("7", "outside 1..5"),
        ("DAPI,,2", "empty entry"),
    ],
)
def test_parse_subset_errors_name_the_problem(text, needle):
    with pytest.raises(MarkerError, match=needle):
        MarkerPanel().parse_subset(text)


def test_marker_error_is_user_input_error():
    assert issubclass(MarkerError, UserInputError)


def test_availability_round_trip():
    p = MarkerPanel()
    v = p.availability(["collagen", "DAPI"])
    np.testing.assert_array_equal(v, [1, 0, 0, 1, 0])
    assert v.dtype == np.float32
    assert p.markers_of(v) == ("DAPI", "collagen")


def test_panel_rejects_duplicates_and_empty():
    with pytest.raises(MarkerError, match="twice"):
        MarkerPanel(("a", "A"))
    with pytest.raises(MarkerError, match="at least one"):
        MarkerPanel(())
