"""Data loaders, splits, standardisation, batches; malformed input always gives a clear error."""

from __future__ import annotations

import gzip
import io
import json
import struct
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deltaprop.app import data
from deltaprop.app.data import (
    DataNote,
    Dataset,
    Standardizer,
    batches,
    load,
    one_hot,
    train_val_test_split,
)

# ---------------------------------------------------------------------------- built-ins
BUILTIN_SHAPES = {  # name: (m, n_0, task, n_outputs)
    "digits": (1797, 64, "classification", 10),
    "iris": (150, 4, "classification", 3),
    "wine": (178, 13, "classification", 3),
    "breast_cancer": (569, 30, "classification", 2),
    "xor": (400, 2, "classification", 2),
    "moons": (400, 2, "classification", 2),
    "regression": (500, 3, "regression", 1),
}


@pytest.mark.parametrize("name", list(BUILTIN_SHAPES))
def test_builtin_shapes_and_determinism(name):
    m, n0, task, nout = BUILTIN_SHAPES[name]
    ds = load(name)
    assert (ds.m, ds.n_features, ds.task, ds.n_outputs) == (m, n0, task, nout)
    assert ds.x.dtype == np.float64 and np.all(np.isfinite(ds.x))
    assert len(ds.feature_names) == n0
    if task == "classification":
        assert ds.y.dtype == np.int64 and ds.y.shape == (m,)
        assert set(np.unique(ds.y)) == set(range(nout))
    else:
        assert ds.y.shape == (m, 1)
    again = load(name)
    np.testing.assert_array_equal(ds.x, again.x)
    np.testing.assert_array_equal(ds.y, again.y)


def test_builtin_labels_are_the_original_names():
    iris = load("iris")
    assert list(iris.classes) == ["setosa", "versicolor", "virginica"]
    assert iris.labels()[0] == "setosa"


def test_builtin_xor_is_xor():
    ds = load("xor")
    np.testing.assert_array_equal(ds.y, (ds.x[:, 0] > 0) ^ (ds.x[:, 1] > 0))


def test_builtin_wrong_task_or_target():
    with pytest.raises(ValueError, match="for classification, not regression"):
        load("iris", task="regression")
    with pytest.raises(ValueError, match="iris: target= applies to CSV files only"):
        load("iris", target=0)


def test_unknown_source_names_builtins():
    with pytest.raises(FileNotFoundError, match="nope.csv: no such file.*digits"):
        load("nope.csv")


# ---------------------------------------------------------------------------- CSV
def write(tmp_path, name, content):
    p = tmp_path / name
    if isinstance(content, str):
        p.write_text(content)
    else:
        p.write_bytes(content)
    return str(p)


def test_csv_header_string_target(tmp_path):
    p = write(tmp_path, "f.csv", "a,b,species\n1,2,cat\n3,4,dog\n5,6.5,cat\n")
    ds = load(p)
    assert ds.task == "classification" and list(ds.classes) == ["cat", "dog"]
    np.testing.assert_array_equal(ds.y, [0, 1, 0])
    np.testing.assert_array_equal(ds.x, [[1, 2], [3, 4], [5, 6.5]])
    assert ds.feature_names == ["a", "b"] and ds.name == "f.csv"


def test_csv_no_header_integer_target_is_classification(tmp_path):
    ds = load(write(tmp_path, "f.csv", "1,2,7\n3,4,3\n5,6,7\n"))
    assert ds.task == "classification" and ds.classes.tolist() == [3, 7]
    assert ds.classes.dtype == np.int64 and ds.feature_names is None
    np.testing.assert_array_equal(ds.labels(), [7, 3, 7])


def test_csv_float_target_is_regression_and_overrides(tmp_path):
    p = write(tmp_path, "f.csv", "x,t\n1,0.5\n2,1.5\n3,0.5\n")
    ds = load(p)
    assert ds.task == "regression" and ds.y.shape == (3, 1)
    np.testing.assert_array_equal(ds.y[:, 0], [0.5, 1.5, 0.5])
    assert load(p, task="classification").classes.tolist() == [0.5, 1.5]
    ints = write(tmp_path, "g.csv", "x,t\n1,1\n2,2\n")
    assert load(ints, task="regression").task == "regression"


@pytest.mark.parametrize("target,want_col", [("b", 1), (0, 0), ("0", 0), (-2, 1), (None, 2)])
def test_csv_target_by_name_or_index(tmp_path, target, want_col):
    rows = np.array([[1, 10, 100], [2, 20, 200], [3, 30, 300]])
    p = write(tmp_path, "f.csv", "a,b,c\n" + "\n".join(",".join(map(str, r)) for r in rows))
    ds = load(p, target=target)
    np.testing.assert_array_equal(ds.labels(), rows[:, want_col])
    np.testing.assert_array_equal(ds.x, np.delete(rows, want_col, axis=1))


@pytest.mark.parametrize("sep,name", [(";", "f.csv"), ("\t", "f.tsv"), ("\t", "f.txt")])
def test_csv_delimiters(tmp_path, sep, name):
    text = sep.join(["a", "b", "y"]) + "\n" + sep.join(["1.5", "2", "0"]) + "\n" + \
        sep.join(["3", "4", "1"]) + "\n"
    ds = load(write(tmp_path, name, text))
    np.testing.assert_array_equal(ds.x, [[1.5, 2], [3, 4]])


def test_csv_blank_lines_bom_and_crlf(tmp_path):
    p = write(tmp_path, "f.csv", "\ufeffa,y\r\n1,0\r\n\r\n2,1\r\n".encode())
    ds = load(p)
    assert ds.feature_names == ["a"] and ds.m == 2


CSV_ERRORS = [
    ("", "empty file"),
    ("\n\n  \n", "empty file"),
    ("a,b,c\n", "a header but no data rows"),
    ("a,b,y\n1,2,0\n3,x,1\n", r"row 3, column 1 \('b'\): 'x' is not a number"),
    ("a,b,y\n1,2,0\n3,,1\n", r"row 3, column 1 \('b'\): '' is not a number"),
    ("1,2,0\n3,4\n", "row 2 has 2 columns, expected 3"),
    ("a,b,y\n1,nan,0\n", "NaN or inf"),
    ("a,b,y\n1,inf,0\n", "NaN or inf"),
    ("a,y\n1,2\n2,nan\n", "target contains NaN or inf"),
    ("1\n2\n", "at least two columns"),
    ('a,y\n1,"unterminated\n', "malformed CSV"),
]


@pytest.mark.parametrize("text,match", CSV_ERRORS)
def test_csv_errors_are_one_clear_line(tmp_path, text, match):
    p = write(tmp_path, "bad.csv", text)
    with pytest.raises(ValueError, match=match) as info:
        load(p)
    msg = str(info.value)
    assert "bad.csv" in msg and "\n" not in msg


def test_csv_target_column_errors(tmp_path):
    p = write(tmp_path, "f.csv", "a,b\n1,0\n2,1\n")
    with pytest.raises(ValueError, match="no target column 'zz' \\(columns: a, b\\)"):
        load(p, target="zz")
    with pytest.raises(ValueError, match="target column 5 does not exist \\(2 columns\\)"):
        load(p, target=5)
    q = write(tmp_path, "g.csv", "1,0\n2,1\n")
    with pytest.raises(ValueError, match="no header row"):
        load(q, target="label")
    with pytest.raises(ValueError, match="text, so the task cannot be regression"):
        load(write(tmp_path, "h.csv", "1,a\n2,b\n"), task="regression")
    with pytest.raises(ValueError, match="target= applies to CSV files only"):
        load(save_npy(tmp_path, np.ones((3, 3))), target=0)


def test_csv_not_utf8_and_binary(tmp_path):
    with pytest.raises(ValueError, match="not a UTF-8 text"):
        load(write(tmp_path, "f.csv", b"a,b\n\xff\xfe,1\n"))
    with pytest.raises(ValueError, match="NUL bytes"):
        load(write(tmp_path, "g.csv", b"a,b\n1\x00,1\n"))


def test_directory_and_task_errors(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load(str(tmp_path))
    with pytest.raises(ValueError, match="task must be one of"):
        load("iris", task="clustering")


# ---------------------------------------------------------------------------- NumPy
def save_npy(tmp_path, arr, name="f.npy", **kw):
    p = tmp_path / name
    np.save(p, arr, **kw)
    return str(p)


def test_npy_last_column_target(tmp_path):
    arr = np.array([[0.5, 1.0, 2], [1.5, 2.0, 0], [2.5, 3.0, 2]], dtype=np.float32)
    ds = load(save_npy(tmp_path, arr))
    assert ds.task == "classification" and ds.classes.tolist() == [0, 2]
    np.testing.assert_array_equal(ds.x, arr[:, :2])
    reg = load(save_npy(tmp_path, np.asfortranarray(np.arange(6.0).reshape(3, 2) / 4), "r.npy"))
    assert reg.task == "regression"
    np.testing.assert_array_equal(reg.y[:, 0], [0.25, 0.75, 1.25])


@pytest.mark.parametrize("arr,match", [
    (np.arange(5.0), "must be 2-D"),
    (np.ones((3, 1)), "must be 2-D"),
    (np.array([[1.0, np.nan, 0]]), "NaN or inf"),
    (np.array([[1, 2], [3, 4]], dtype=object), "holds object data"),
    (np.array([["a", "b"]]), "numbers are needed"),
])
def test_npy_errors(tmp_path, arr, match):
    p = save_npy(tmp_path, arr, allow_pickle=True)
    with pytest.raises(ValueError, match=match):
        load(p)


def test_npy_truncated_and_garbage(tmp_path):
    p = save_npy(tmp_path, np.ones((10, 3)))
    raw = open(p, "rb").read()
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load(write(tmp_path, "t.npy", raw[:-5]))
    with pytest.raises(ValueError, match="not a valid .npy"):
        load(write(tmp_path, "h.npy", raw[:12]))
    with pytest.raises(ValueError, match="not a valid .npy file \\(unrecognised header\\)"):
        load(write(tmp_path, "g.npy", b"hello world, not numpy"))


def save_npz(tmp_path, name="f.npz", **arrays):
    p = tmp_path / name
    np.savez_compressed(p, **arrays)
    return str(p)


def test_npz_keys_images_and_onehot(tmp_path):
    x = np.arange(24.0).reshape(4, 2, 3)
    ds = load(save_npz(tmp_path, X=x, Y=np.array([3, 1, 3, 1])))
    assert ds.x.shape == (4, 6) and ds.classes.tolist() == [1, 3]
    y2 = np.eye(3)[[0, 2, 1, 2]]
    ds = load(save_npz(tmp_path, "g.npz", x=x, y=y2))
    assert ds.task == "regression" and ds.y.shape == (4, 3)
    ds = load(save_npz(tmp_path, "h.npz", x=x, y=y2), task="classification")
    np.testing.assert_array_equal(ds.y, [0, 2, 1, 2])


@pytest.mark.parametrize("arrays,match", [
    (dict(x=np.ones((3, 2))), "needs arrays 'x' .* found \\['x'\\]"),
    (dict(x=np.ones((3, 2)), y=np.ones(4)), "x must be \\(m, n_0"),
    (dict(x=np.ones(3), y=np.ones(3)), "x must be \\(m, n_0"),
    (dict(x=np.ones((3, 2)), y=np.array([0.5, 1, 2])), None),  # fine: regression
])
def test_npz_errors(tmp_path, arrays, match):
    p = save_npz(tmp_path, **arrays)
    if match is None:
        assert load(p).task == "regression"
        return
    with pytest.raises(ValueError, match=match):
        load(p)


def test_npz_onehot_required_for_2d_classification(tmp_path):
    p = save_npz(tmp_path, x=np.ones((2, 2)), y=np.array([[0.5, 0.5], [1, 0]]))
    with pytest.raises(ValueError, match="one-hot rows for classification"):
        load(p, task="classification")


def test_npz_truncated(tmp_path):
    raw = open(save_npz(tmp_path, x=np.ones((50, 4)), y=np.zeros(50)), "rb").read()
    for cut in (10, len(raw) // 2, len(raw) - 3):
        with pytest.raises(ValueError, match="t.npz"):
            load(write(tmp_path, "t.npz", raw[:cut]))


# ---------------------------------------------------------------------------- IDX
def idx_bytes(arr, code=0x08):
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + np.asarray(arr, dtype=dtype).tobytes()


def mnist_pair(tmp_path, m=6, gz=True, prefix="train"):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (m, 4, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, m, dtype=np.uint8)
    labels[:2] = [0, 9]
    suffix = ".gz" if gz else ""
    enc = gzip.compress if gz else (lambda b: b)
    ip = write(tmp_path, f"{prefix}-images-idx3-ubyte{suffix}", enc(idx_bytes(images)))
    lp = write(tmp_path, f"{prefix}-labels-idx1-ubyte{suffix}", enc(idx_bytes(labels)))
    return ip, lp, images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_idx_mnist_naming(tmp_path, gz):
    ip, lp, images, labels = mnist_pair(tmp_path, gz=gz)
    ds = load(ip)
    assert ds.x.shape == (6, 12) and ds.task == "classification"
    np.testing.assert_array_equal(ds.x, images.reshape(6, -1))
    np.testing.assert_array_equal(ds.labels(), labels)
    both = load(f"{ip}:{lp}")
    np.testing.assert_array_equal(both.y, ds.y)


def test_idx_other_dtypes_and_explicit_pair(tmp_path):
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    ip = write(tmp_path, "a.idx", idx_bytes(x, 0x0E))
    lp = write(tmp_path, "b.idx", idx_bytes(np.array([-1, 5, -1]), 0x0C))
    ds = load(f"{ip}:{lp}")
    np.testing.assert_array_equal(ds.x, x)
    assert ds.classes.tolist() == [-1, 5]


def test_idx_errors(tmp_path):
    ip, lp, images, labels = mnist_pair(tmp_path, gz=False)
    good = idx_bytes(images)
    cases = [
        (good[:-1], "truncated: IDX data of shape \\(6, 4, 3\\) needs 72 bytes"),
        (good + b"\x00", "extra bytes after the IDX data"),
        (good[:6], "truncated: the IDX shape"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated: the IDX shape"),
        (gzip.compress(good)[:-12], "corrupt or truncated gzip|truncated"),
        (b"\x1f\x8b\x08\x00garbage-garbage", "corrupt or truncated gzip|truncated"),
        (b"\x00\x00\x08\x02" + struct.pack(">2I", 2**31, 2**31), "GiB is available"),
    ]
    for raw, match in cases:
        p = write(tmp_path, "train-images-idx3-ubyte", raw)
        with pytest.raises(ValueError, match=match):
            load(p)
    bad_magic = write(tmp_path, "x.idx", b"\x00\x00\x07\x01abcd")
    with pytest.raises(ValueError, match="not a valid .idx file"):
        load(bad_magic)
    with pytest.raises(ValueError, match="not an IDX file \\(magic bytes"):
        load(f"{bad_magic}:{lp}")


def test_idx_pairing_errors(tmp_path):
    ip, lp, images, labels = mnist_pair(tmp_path, gz=False)
    with pytest.raises(ValueError, match="is a 1-D IDX \\(labels\\) file"):
        load(lp)
    lonely = write(tmp_path, "t10k-images-idx3-ubyte", idx_bytes(images))
    with pytest.raises(ValueError, match="no labels file found .*t10k-labels-idx1-ubyte"):
        load(lonely)
    short = write(tmp_path, "short.idx", idx_bytes(labels[:4]))
    with pytest.raises(ValueError, match="4 labels for 6 images"):
        load(f"{ip}:{short}")
    with pytest.raises(ValueError, match="a labels file must be 1-D"):
        load(f"{ip}:{ip}")
    with pytest.raises(FileNotFoundError, match="missing.idx"):
        load(f"{ip}:{tmp_path}/missing.idx")


# ---------------------------------------------------------------------------- fuzzing
OK = (ValueError, OSError)
FUZZ = settings(max_examples=60, deadline=2000,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
NAMES = ["f.csv", "f.npy", "f.npz", "f.idx", "train-images-idx3-ubyte.gz", "f.bin", "f.tsv"]
MAGICS = [b"", b"\x93NUMPY", b"\x93NUMPY\x01\x00", b"PK\x03\x04", b"\x1f\x8b\x08\x00",
          b"\x00\x00\x08\x03", b"\x00\x00\x0d\x01", b"a,b,c\n"]


def _load_or_clear_error(path):
    try:
        ds = load(path)
    except OK as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, msg
        assert "f." in msg or "images" in msg or "labels" in msg, msg
        return None
    assert isinstance(ds, Dataset) and np.all(np.isfinite(ds.x))
    return ds


@FUZZ
@given(name=st.sampled_from(NAMES), magic=st.sampled_from(MAGICS), body=st.binary(max_size=300))
def test_fuzz_bytes_never_crash(tmp_path, name, magic, body):
    _load_or_clear_error(write(tmp_path, name, magic + body))


@FUZZ
@given(cut=st.integers(0, 400), flip=st.integers(0, 400), byte=st.integers(0, 255),
       kind=st.sampled_from(["npy", "npz", "idx", "idxgz"]))
def test_fuzz_corrupted_valid_files(tmp_path, cut, flip, byte, kind):
    """Valid files truncated at a random byte or with one byte changed."""
    x = np.arange(30.0).reshape(10, 3)
    if kind == "npy":
        buf = io.BytesIO()
        np.save(buf, x)
        raw = buf.getvalue()
    elif kind == "npz":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for k, v in (("x", x), ("y", np.arange(10) % 2)):
                b = io.BytesIO()
                np.save(b, v)
                zf.writestr(f"{k}.npy", b.getvalue())
        raw = buf.getvalue()
    else:
        raw = idx_bytes(np.arange(60).reshape(10, 2, 3) % 256)
        write(tmp_path, "train-labels-idx1-ubyte.gz", gzip.compress(idx_bytes(np.arange(10))))
        write(tmp_path, "train-labels-idx1-ubyte", idx_bytes(np.arange(10)))
        if kind == "idxgz":
            raw = gzip.compress(raw)
    name = {"npy": "f.npy", "npz": "f.npz", "idx": "train-images-idx3-ubyte",
            "idxgz": "train-images-idx3-ubyte.gz"}[kind]
    if flip < len(raw):
        raw = raw[:flip] + bytes([byte]) + raw[flip + 1:]
    _load_or_clear_error(write(tmp_path, name, raw[:cut] if cut < len(raw) else raw))


CELL = st.one_of(
    st.integers(-5, 5).map(str), st.floats(-10, 10).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e999", "abc", "cat", "1,5", '"q"', "0x1f",
                     "1_0", "\t"]),
    st.text(max_size=6))


@FUZZ
@given(rows=st.integers(1, 4).flatmap(
           lambda w: st.lists(st.lists(CELL, min_size=w, max_size=w), max_size=6)),
       ragged=st.lists(CELL, max_size=5),
       sep=st.sampled_from([",", ";", "\t"]), header=st.booleans(),
       target=st.one_of(st.none(), st.integers(-4, 4), st.sampled_from(["c0", "c2", "zz"])),
       task=st.sampled_from([None, "classification", "regression"]))
def test_fuzz_csv_text(tmp_path, rows, ragged, sep, header, target, task):
    lines = [sep.join(r) for r in rows + ([ragged] if ragged else [])]
    if header and rows:
        lines.insert(0, sep.join(f"c{j}" for j in range(len(rows[0]))))
    p = write(tmp_path, "f.csv", "\n".join(lines).encode("utf-8", "surrogatepass"))
    try:
        ds = load(p, target=target, task=task)
    except OK as exc:
        assert "f.csv" in str(exc) and "\n" not in str(exc)
        return
    assert np.all(np.isfinite(ds.x)) and ds.m >= 1 and ds.task in ("classification",
                                                                    "regression")
    if task is not None:
        assert ds.task == task


def test_idx_header_too_big_for_memory_is_one_line(tmp_path):
    """A few bytes of gzip whose header claims 60000 x 28000 x 28000 pixels (47 TB): refused
    from the header, before anything is read or allocated."""
    header = b"\x00\x00\x08\x03" + struct.pack(">3I", 60000, 28000, 28000)
    p = write(tmp_path, "huge-images-idx3-ubyte.gz", gzip.compress(header + bytes(100)))
    assert len(open(p, "rb").read()) < 200
    with pytest.raises(ValueError, match=r"shape \(60000, 28000, 28000\); loading it as float64 "
                       r"features would need about 394,000 GiB and .* GiB is available") as e:
        load(p)
    assert "\n" not in str(e.value) and str(e.value).startswith(p)


def test_idx_memory_estimate_against_available(tmp_path, monkeypatch):
    ip, lp, images, labels = mnist_pair(tmp_path, gz=True)  # 6 x 4 x 3 uint8: 72 + 8 * 72
    assert data.available_memory() > 2**20  # this machine's MemAvailable, or its cgroup's
    monkeypatch.setattr(data, "available_memory", lambda: 810)  # 648 bytes: 80% of 810
    assert load(ip).x.shape == (6, 12)
    monkeypatch.setattr(data, "available_memory", lambda: 809)
    with pytest.raises(ValueError, match=r"shape \(6, 4, 3\); loading it as float64"):
        load(ip)
    monkeypatch.setattr(data, "available_memory", lambda: None)  # unknown: no refusal
    assert load(ip).m == 6


# ---------------------------------------------------------------------------- pandas index
def test_csv_pandas_default_index_is_dropped(tmp_path):
    """iris sorted by class, written by pandas' to_csv with its default index: the row
    number would give the label away, so it is dropped (with a note), not read as x_0."""
    pd = pytest.importorskip("pandas")
    from sklearn.datasets import load_iris

    bunch = load_iris(as_frame=True)
    frame = bunch.frame  # sorted by class: rows 0..49 setosa, 50..99, 100..149
    p = str(tmp_path / "iris.csv")
    frame.to_csv(p)
    assert open(p).readline().startswith(",sepal length")
    with pytest.warns(DataNote, match="column 0 has no name .* 0..149 .* dropped"):
        ds = load(p)
    np.testing.assert_array_equal(ds.x, bunch.data.to_numpy())
    assert ds.feature_names == list(bunch.data.columns)
    np.testing.assert_array_equal(ds.labels(), bunch.target.to_numpy())
    again = str(tmp_path / "again.csv")  # read back and written again: "Unnamed: 0" too
    pd.read_csv(p).to_csv(again)
    with pytest.warns(DataNote) as notes:
        ds2 = load(again)
    assert len(notes) == 2 and "column 1" in str(notes[1].message)
    np.testing.assert_array_equal(ds2.x, ds.x)
    frame.to_csv(p, index=False)  # no index: nothing dropped, no note
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(p).n_features == 4


@pytest.mark.parametrize("text,n_features", [
    ("id,a,y\n0,1.5,0\n1,2.5,1\n2,3.5,0\n", 2),   # named: a real column
    (",a,y\n1,1.5,0\n2,2.5,1\n3,3.5,0\n", 2),     # unnamed but 1..m, not 0..m-1
    (",a,y\n0,1.5,0\n2,2.5,1\n1,3.5,0\n", 2),     # unnamed but shuffled
    ("0,1.5,0\n1,2.5,1\n2,3.5,0\n", 2),            # no header row
])
def test_csv_other_first_columns_are_kept(tmp_path, text, n_features):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load(write(tmp_path, "f.csv", text))
    assert ds.n_features == n_features


def test_csv_pandas_index_chosen_as_target_is_kept(tmp_path):
    ds = load(write(tmp_path, "f.csv", ",a,b\n0,1.5,7\n1,2.5,8\n2,3.5,7\n"), target=0)
    assert ds.n_features == 2 and ds.labels().tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------- scikit-learn
def test_moons_split_and_scaling_are_scikit_learns():
    from sklearn.datasets import make_moons
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = make_moons(400, noise=0.15, random_state=0)
    moons = load("moons")
    np.testing.assert_array_equal(moons.x, x)
    np.testing.assert_array_equal(moons.y, y)
    ds = load("regression")
    tr, va, te = train_val_test_split(ds, val=0.1, test=0.2, seed=5)
    rest, test_rows = train_test_split(np.arange(500), test_size=100, random_state=5)
    train_rows, val_rows = train_test_split(rest, test_size=50, random_state=5)
    for part, rows in ((tr, train_rows), (va, val_rows), (te, test_rows)):
        np.testing.assert_array_equal(part.x, ds.x[np.sort(rows)])
    s = Standardizer().fit(tr.x)
    sk = StandardScaler().fit(tr.x)
    np.testing.assert_array_equal(s.mean, sk.mean_)
    np.testing.assert_array_equal(s.scale, sk.scale_)
    np.testing.assert_allclose(s.transform(te.x), sk.transform(te.x), rtol=1e-15)


def test_split_stratification_falls_back_for_tiny_splits():
    iris = load("iris")
    tr, va, te = train_val_test_split(iris, val=0.01, test=0.2, seed=0)  # 2 rows, 3 classes
    assert (tr.m, va.m, te.m) == (118, 2, 30)
    assert np.bincount(te.y).tolist() == [10, 10, 10]  # the test split still stratified


# ---------------------------------------------------------------------------- splits
def test_split_sizes_disjoint_and_stratified():
    ds = load("digits")
    tr, va, te = train_val_test_split(ds, val=0.1, test=0.2, seed=3)
    assert (tr.m, va.m, te.m) == (ds.m - 180 - 359, 180, 359)
    rows = lambda d: {r.tobytes() for r in np.column_stack([d.x, d.y])}  # noqa: E731
    assert not rows(tr) & rows(te) and not rows(tr) & rows(va) and not rows(va) & rows(te)
    whole = np.bincount(ds.y) / ds.m
    for part in (tr, va, te):
        np.testing.assert_allclose(np.bincount(part.y, minlength=10) / part.m, whole, atol=0.012)
    again = train_val_test_split(ds, val=0.1, test=0.2, seed=3)
    np.testing.assert_array_equal(again[2].x, te.x)
    other = train_val_test_split(ds, val=0.1, test=0.2, seed=4)
    assert not np.array_equal(other[2].x, te.x)


def test_split_regression_unstratified_and_zero():
    ds = load("regression")
    tr, va, te = train_val_test_split(ds, val=0.0, test=0.25)
    assert (tr.m, va.m, te.m) == (375, 0, 125) and va.y.shape == (0, 1)
    tr, va, te = train_val_test_split(load("iris"), val=0.001, test=0.2, stratify=False)
    assert va.m == 1 and te.m == 30


@pytest.mark.parametrize("val,test", [(0.5, 0.5), (-0.1, 0.2), (0.1, 1.0), ("a", 0.1)])
def test_split_errors(val, test):
    with pytest.raises(ValueError):
        train_val_test_split(load("iris"), val=val, test=test)


# ---------------------------------------------------------------------------- scaling
def test_standardizer_train_only_constant_columns_and_roundtrip():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(5, 3, 200), np.full(200, 7.0), rng.uniform(0, 1e-3, 200)])
    tr, te = x[:150], x[150:]
    s = Standardizer().fit(tr)
    z = s.transform(tr)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), [1, 0, 1], atol=1e-12)
    assert np.all(z[:, 1] == 0)
    np.testing.assert_allclose(s.transform(te), (te - tr.mean(0)) / np.where(
        tr.std(0) > 0, tr.std(0), 1))
    d = json.loads(json.dumps(s.to_dict()))
    assert set(d) == {"mean", "scale"} and isinstance(d["mean"], list)
    s2 = Standardizer.from_dict(d)
    np.testing.assert_array_equal(s2.transform(te), s.transform(te))
    np.testing.assert_allclose(s2.inverse_transform(s2.transform(te)), te)


def test_standardizer_errors():
    with pytest.raises(ValueError, match="not fitted"):
        Standardizer().transform(np.ones((2, 2)))
    s = Standardizer().fit(np.ones((3, 2)))
    with pytest.raises(ValueError, match="x has 3 columns; .* fitted on 2"):
        s.transform(np.ones((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        Standardizer().fit(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="'mean' and 'scale'"):
        Standardizer.from_dict({"mean": [0.0]})
    with pytest.raises(ValueError, match="'mean' and 'scale'"):  # was a KeyError
        Standardizer.from_dict({"mean": [0.0], "std": [1.0]})
    with pytest.raises(ValueError, match="positive"):
        Standardizer.from_dict({"mean": [0.0], "scale": [0.0]})


# ---------------------------------------------------------------------------- encoding
def test_one_hot():
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    assert one_hot(np.array([], dtype=int), 4).shape == (0, 4)
    assert one_hot(np.array([1]), 2).dtype == np.float64
    f32 = one_hot(np.array([1, 1]), 2, dtype=np.float32)
    assert f32.dtype == np.float32 and f32.tolist() == [[0, 1], [0, 1]]
    with pytest.raises(ValueError, match="0..2"):
        one_hot(np.array([3]), 3)
    with pytest.raises(ValueError, match="integer"):
        one_hot(np.array([0.5]), 3)


def test_one_hot_is_one_function_for_every_namespace():
    """data.one_hot is the engine's one-hot: the same rows from NumPy and from the strict
    array API reference (no NumPy habits), stacked labels included; bad labels refused."""
    xps = pytest.importorskip("array_api_strict")
    from deltaprop import _checks

    assert one_hot is _checks.one_hot
    y = np.array([[2, 0, 1], [1, 1, 0]])
    want = np.eye(3)[y]
    got = one_hot(xps.asarray(y), 3, xps.float32, xp=xps)
    assert got.dtype == xps.float32 and got.shape == (2, 3, 3)
    np.testing.assert_array_equal(np.asarray(xps.astype(got, xps.float64)), want)
    np.testing.assert_array_equal(one_hot(y, 3), want)
    with pytest.raises(ValueError, match=r"^y: labels must lie in 0\.\.2"):
        one_hot(xps.asarray([0, 3]), 3, xp=xps, name="y")


def test_batches_share_train_batch_size_parser():
    """One batch-size check: data.batches takes what train.parse_batch_size takes."""
    from deltaprop.app.train import parse_batch_size

    assert [len(b) for b in batches(7, "3", None)] == [3, 3, 1]
    assert [len(b) for b in batches(7, " FULL ", None)] == [7]
    for bad in ("half", -2, 2.5, True):
        with pytest.raises(ValueError, match="batch_size") as a:
            list(batches(5, bad))
        with pytest.raises(ValueError, match="batch_size") as b:
            parse_batch_size(bad)
        assert str(a.value) == str(b.value)


@pytest.mark.parametrize("bs,sizes", [(1, [1] * 7), (3, [3, 3, 1]), (7, [7]), (100, [7]),
                                      (None, [7]), (0, [7]), ("full", [7])])
def test_batches_cover_every_index_once(bs, sizes):
    got = list(batches(7, bs, np.random.default_rng(0)))
    assert [len(b) for b in got] == sizes
    np.testing.assert_array_equal(np.sort(np.concatenate(got)), np.arange(7))


def test_batches_shuffle_is_seeded():
    a = np.concatenate(list(batches(50, 8, np.random.default_rng(1))))
    b = np.concatenate(list(batches(50, 8, np.random.default_rng(1))))
    c = np.concatenate(list(batches(50, 8, None)))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c, np.arange(50))
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="batch_size"):
        list(batches(5, -2))
    with pytest.raises(ValueError, match="batch_size"):
        list(batches(5, "half"))


def test_data_module_does_not_import_sklearn_at_import_time():
    import subprocess
    import sys
    code = "import sys, deltaprop.app.data; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert data.BUILTINS  # the registry is importable without scikit-learn loaded


def test_memory_messages_print_gibibytes_without_an_exponent():
    from deltaprop.app.data import gibibytes

    gib = 2 ** 30
    assert [gibibytes(v * gib) for v in (394_123, 2_894.4, 999.6, 264.4, 0.9312)] == \
        ["394,000", "2,890", "1,000", "264", "0.931"]
