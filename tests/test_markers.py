import numpy as np
import pytest

from marker_excite.markers import PAPER_MARKERS, MarkerError, MarkerPanel
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
    assert subs[0] == (0,) and subs[-1] == (0, 1, 2, 3, 4)
    assert [len(s) for s in subs] == sorted(len(s) for s in subs)
    assert p.subset_label((4, 0, 1)) == "m_125"


@pytest.mark.parametrize("text", ["DAPI,CXCL12-GFP", "1,5", "m_15", "m15", " dapi , 5 "])
def test_parse_subset_forms(text):
    assert MarkerPanel().parse_subset(text) == (0, 4)


@pytest.mark.parametrize(
    "text,needle",
    [("DAPI,foo", "unknown marker 'foo'"), ("1,1", "twice"), ("", "empty marker set"), ("7", "outside 1..5"), ("DAPI,,2", "empty entry")],
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
