import numpy as np
import pytest

from mmad import taxonomy
from mmad.errors import DataError


def test_ma52_sizes_and_range_rule():
    assert taxonomy.NUM_MA52_ACTIONS == 52
    assert taxonomy.NUM_MA52_BODIES == 7
    expected = [0] * 5 + [1] * 6 + [2] * 13 + [3] * 8 + [4] * 6 + [5] * 10 + [6] * 4
    assert taxonomy.fine2coarse_table().tolist() == expected
    assert taxonomy.fine2coarse(45) == 5
    np.testing.assert_array_equal(taxonomy.fine2coarse(np.array([0, 51])), [0, 6])
    with pytest.raises(ValueError):
        taxonomy.fine2coarse(52)


def test_imigue_mapping_round_trip():
    assert taxonomy.imigue_index(1) == 0
    assert taxonomy.imigue_index(31) == 30
    assert taxonomy.imigue_index(99) == 31
    assert all(taxonomy.imigue_index(taxonomy.imigue_raw_id(i)) == i for i in range(32))
    with pytest.raises(DataError, match="unknown iMiGUE class id 50"):
        taxonomy.imigue_index(50, path="labels.csv", where="row 3")


def test_against_real_label_files(shared_datasets):
    lines = (shared_datasets / "ma52" / "label_name.txt").read_text().strip().splitlines()
    real = {int(i): n.strip() for i, n in (ln.split("\t", 1) for ln in lines)}
    assert [real[i] for i in range(52)] == list(taxonomy.MA52_ACTIONS)
    import csv

    with open(shared_datasets / "ma52" / "label_map.csv") as f:
        for row in csv.DictReader(f):
            assert taxonomy.fine2coarse(int(row["action_id"])) == int(row["body_id"])
            assert taxonomy.MA52_BODY_GROUPS[int(row["body_id"])] == row["body_name"]
    en = [ln.split(" ", 1)[1].strip() for ln in (shared_datasets / "imigue" / "english_label.txt").read_text().splitlines() if ln.strip()]
    assert en == list(taxonomy.IMIGUE_CLASSES)
