"""Results I/O: typed tables that round-trip bit for bit, sidecars, torn lines, atomic and append-only writes,
the exclusive lock."""

import json
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest

from isojax.runs import keys, results

# Run in the float32 pass only (README: "Tests"): files, processes and tables, with no dtype-specific path.
pytestmark = pytest.mark.float32_only


def test_table_round_trips_typed_values_text_with_commas_and_quotes(tmp_path):
    rows = [{"scope": "within dataset, mean", "note": 'a "quoted" word', "value": 0.1, "n": 3, "ok": True}]
    results.save_table(rows, tmp_path / "t.csv", {"name": "t"})
    back = results.read_table(tmp_path / "t.csv")
    assert back == [{"cell": 0, "scope": "within dataset, mean", "note": 'a "quoted" word', "value": 0.1, "n": 3,
                     "ok": True}]
    assert [type(v) for v in back[0].values()] == [int, str, str, float, int, bool]


def test_floats_round_trip_bit_for_bit(tmp_path):
    rng = np.random.default_rng(0)
    values = [float(v) for v in rng.standard_normal(200) * 10.0 ** rng.integers(-300, 300, 200)]
    values += [5e-324, -0.0, math.inf, -math.inf, float(np.float32(0.1)), 1e16, 123456789.0]
    results.save_table([{"v": v} for v in values], tmp_path / "f.csv", {"name": "f"})
    back = [r["v"] for r in results.read_table(tmp_path / "f.csv")]
    assert [np.float64(v).tobytes() for v in back] == [np.float64(v).tobytes() for v in values]
    results.save_table([{"v": math.nan}], tmp_path / "nan.csv", {"name": "nan"})
    assert math.isnan(results.read_table(tmp_path / "nan.csv")[0]["v"])


def test_sidecar_types_win_over_the_value_rule(tmp_path):
    # text that looks like a number stays text when the sidecar says so
    results.save_table([{"name": "1", "flag": "True", "x": 2}], tmp_path / "t.csv", {"name": "t"})
    assert results.read_table(tmp_path / "t.csv") == [{"cell": 0, "name": "1", "flag": "True", "x": 2}]
    meta = json.loads((tmp_path / "t.csv.json").read_text())
    assert meta["columns"] == {"cell": "int", "name": "str", "flag": "str", "x": "int"}
    assert meta["config_hash"] == keys.digest({"name": "t"}) == results.config_hash({"name": "t"})
    assert {"versions", "git_commit", "devices"} <= set(meta)


def test_table_without_sidecar_is_typed_value_by_value(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,c,d,e\n1,-2.5e-3,True,nan,x y\n")
    (row,) = results.read_table(tmp_path / "t.csv")
    assert math.isnan(row.pop("d")) and row == {"a": 1, "b": -2.5e-3, "c": True, "e": "x y"}
    assert [results.value_kind(t) for t in ("12", "-3", "1.5", "1e5", "inf", "-inf", "True", "None", "1.2.3")] == \
        ["int", "int", "float", "float", "float", "float", "bool", "str", "str"]


def test_mixed_int_float_column_is_float():
    assert results.column_types([{"k": 0}, {"k": 0.5}, {"k": "a"}]) == {"k": "str"}
    assert results.column_types([{"k": 0}, {"k": 0.5}]) == {"k": "float"}
    assert results.column_types([{"k": np.float32(1)}, {"k": np.int64(2)}, {"b": np.bool_(True)}]) == \
        {"k": "float", "b": "bool"}
    # an array is typed by its text, which is what is written
    assert results.column_types([{"a": np.array(0.5), "j": jnp.float32(0.25), "s": np.array("x")}]) == \
        {"a": "float", "j": "float", "s": "str"}


def test_values_are_written_as_before():
    # the text of every kind of value the experiments write is unchanged (tables stay byte for byte the same)
    def old_format(value):
        if isinstance(value, (float, np.floating)):
            return repr(float(value))
        if isinstance(value, (np.integer, np.bool_)):
            return str(value.item())
        return str(value)

    values = [0.1, np.float32(0.1), np.float64(1e-300), 3, np.int32(-4), True, np.bool_(False), "a, b",
              np.array(0.1, np.float32), jnp.float32(0.1), jnp.array(7), math.inf, -0.0]
    assert [results.format_value(v) for v in values] == [old_format(v) for v in values]


def _write(path, text, complete):
    path.write_text(text)
    results.write_sidecar(path, {"name": "t"}, complete=complete)


def test_torn_last_line_is_dropped_only_while_the_table_is_being_written(tmp_path):
    path = tmp_path / "t.csv"
    _write(path, "cell,x\n0,0.5\n1,0.2", complete=False)
    assert results.read_table(path) == [{"cell": 0, "x": 0.5}]
    _write(path, "cell,x\n0,0.5\n1,0.2", complete=True)
    with pytest.raises(ValueError, match="last line is incomplete"):
        results.read_table(path)
    path.with_name("t.csv.json").unlink()
    with pytest.raises(ValueError, match="last line is incomplete"):
        results.read_table(path)


@pytest.mark.parametrize("text, match", [
    ("cell,x\n0,0.5\n1\n2,0.3\n", "line 3 has 1 fields, the header 2"),
    ("cell,x\n0,0.5\n1,0.2,9\n", "line 3 has 3 fields"),
    ("", "no header"),
])
def test_malformed_lines_are_refused_even_while_being_written(tmp_path, text, match):
    path = tmp_path / "t.csv"
    _write(path, text, complete=False)
    with pytest.raises(ValueError, match=match):
        results.read_table(path)


def test_unparseable_typed_value_names_file_and_line(tmp_path):
    path = tmp_path / "t.csv"
    results.save_table([{"x": 0.5}, {"x": 0.25}], path, {"name": "t"})
    path.write_text(path.read_text().replace("0.25", "None"))
    with pytest.raises(ValueError, match=r"t\.csv'?: line 3 does not match its digest in the sidecar"):
        results.read_table(path)
    side = results.sidecar_path(path)  # a sidecar without row digests (made elsewhere): the value's type decides
    side.write_text(json.dumps({k: v for k, v in json.loads(side.read_text()).items() if k != "row_sha256"}))
    with pytest.raises(ValueError, match=r"t\.csv'?: line 3: could not convert"):
        results.read_table(path)


def test_append_text_adds_complete_lines_only(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a\n")
    results.append_text(path, "b\nc\n")
    assert path.read_text() == "a\nb\nc\n"
    with pytest.raises(ValueError, match="complete lines"):
        results.append_text(path, "d")
    assert path.read_text() == "a\nb\nc\n"


def test_truncate_torn_tail(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("cell,x\n0,0.5\n1,0.")
    assert results.truncate_torn_tail(path) == 4
    assert path.read_text() == "cell,x\n0,0.5\n"
    assert results.truncate_torn_tail(path) == 0


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    results.atomic_write(tmp_path / "a.txt", "x")
    results.atomic_write(tmp_path / "a.txt", "y")
    assert os.listdir(tmp_path) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "y"


def test_second_lock_holder_is_refused_at_once_and_the_lock_file_goes_away(tmp_path):
    path = tmp_path / "t.csv"
    with results.exclusive_lock(path) as lock:
        assert lock.read_text() == str(os.getpid())
        # flock locks belong to open file descriptions, so a second open in this process conflicts too
        match = rf"t\.csv'? is being written by another process \(pid {os.getpid()}"
        with pytest.raises(results.TableLockedError, match=match):
            with results.exclusive_lock(path):
                pass
    assert not lock.exists()
    with results.exclusive_lock(path):  # free again
        pass
    assert os.listdir(tmp_path) == []


def test_machine_and_provenance():
    m = results.machine()
    assert m["cores"] >= 1 and m["devices"] and m["jax"]
    assert results.versions()["isojax"]
