import pytest

from fedrift.datasets import DataError, finite_rows, read_csv


def test_csv_reads_numbers_booleans_and_categorical_labels(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a,flag,label\n1.5,True,UP\n-2,false,DOWN\n3,TRUE,UP\n")
    names, rows = read_csv(f)
    assert names == ["a", "flag"]
    assert list(rows) == [([1.5, 1.0], 0), ([-2.0, 0.0], 1), ([3.0, 1.0], 0)]


def test_csv_label_column_by_name(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("y,a,b\n1,2,3\n0,4,5\n")
    names, rows = read_csv(f, label_column="y")
    assert names == ["a", "b"] and list(rows) == [([2.0, 3.0], 1), ([4.0, 5.0], 0)]


@pytest.mark.parametrize("cell", ["red", ""])
def test_csv_non_numeric_feature_names_line_and_cell(tmp_path, cell):
    f = tmp_path / "d.csv"
    f.write_text(f"a,b,label\n1,2,0\n1,{cell},1\n")
    _, rows = read_csv(f)
    with pytest.raises(DataError, match=rf"d\.csv:3: feature '{cell}' is neither a number nor true/false"):
        list(rows)


def test_csv_row_with_a_missing_column_names_its_line(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a,b,label\n1,2,0\n1,1\n")
    _, rows = read_csv(f)
    with pytest.raises(DataError, match=r"d\.csv:3: 2 columns, the header has 3"):
        list(rows)


def test_finite_rows_names_the_first_event_the_simulator_cannot_use():
    rows = [([1.0, 2.0], 0), ([1.0, float("inf")], 1), ([float("nan"), 0.0], 0)]
    checked = finite_rows(iter(rows), "s.csv")
    assert next(checked) == rows[0]
    with pytest.raises(DataError, match=r"s\.csv: event 2: feature 1 is inf"):
        next(checked)
