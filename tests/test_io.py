"""Model files: round trip, metadata, and refusal of everything that is not one."""

import json
import os
import pickle
import re
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deltaprop import Network
from deltaprop.app import files as dio

META = {"loss": "softmax-cross-entropy", "classes": [0, 1, 2],
        "standardization": {"mean": [0.0, 1.0, 2.0, 3.0], "scale": [1.0, 2.0, 3.0, 4.0]},
        "settings": {"optimizer": "adam", "lr": None}, "history": {"epochs": 3}}


def _net(dtype="float64"):
    return Network.init([4, 5, 3], "tanh", "softmax", seed=1, dtype=dtype, bias_std=0.1)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.safetensors"
    dio.save_model(path, _net(), META)
    return path


@pytest.mark.smoke
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_bit_for_bit(tmp_path, dtype):
    net = _net(dtype)
    dio.save_model(tmp_path / "m.safetensors", net, META)
    back, meta = dio.load_model(tmp_path / "m.safetensors")
    assert back.sizes == net.sizes and back.activation_names() == net.activation_names()
    for l in (1, 2):
        assert back.W[l].dtype == np.dtype(dtype)
        assert np.array_equal(back.W[l], net.W[l]) and np.array_equal(back.b[l], net.b[l])
    assert meta == META


def test_file_layout_is_plain_safetensors(model_file):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    tensors = load_file(model_file)
    assert set(tensors) == {"W.1", "b.1", "W.2", "b.2"} and tensors["W.1"].shape == (5, 4)
    with safe_open(model_file, "np") as f:
        meta = f.metadata()
    assert meta["format"] == "deltaprop" and meta["format_version"] == "1"
    assert json.loads(meta["sizes"]) == [4, 5, 3]
    assert json.loads(meta["activations"]) == ["tanh", "softmax"]
    assert meta["dtype"] == "float64"


def test_atomic_write_keeps_old_file_on_failure(model_file, monkeypatch):
    before = model_file.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(dio.os, "replace", boom)
    with pytest.raises(OSError):
        dio.save_model(model_file, Network.init([4, 2, 3], "tanh", "softmax"), {})
    assert model_file.read_bytes() == before
    assert [p.name for p in model_file.parent.iterdir()] == [model_file.name]  # no temp left


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_atomic_write_gives_the_mode_a_plain_write_would(tmp_path):
    """New files: 0o666 less the umask (tempfile.mkstemp made them 0o600); a replaced file
    keeps its mode."""
    umask = os.umask(0o022)
    try:
        new = dio.atomic_write_text(tmp_path / "new.json", "{}")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644
        old = tmp_path / "old.json"
        old.write_text("x")
        old.chmod(0o640)
        dio.atomic_write_text(old, "y")
        assert stat.S_IMODE(old.stat().st_mode) == 0o640 and old.read_text() == "y"
    finally:
        os.umask(umask)


def _save_raw(path, tensors, meta):
    from safetensors.numpy import save_file

    save_file(tensors, path, metadata=meta)


def _valid_parts():
    net = _net()
    tensors = {f"{k}.{l}": getattr(net, k)[l] for l in (1, 2) for k in "Wb"}
    meta = {"format": "deltaprop", "format_version": "1", "sizes": "[4, 5, 3]",
            "activations": '["tanh", "softmax"]', "dtype": "float64", "meta": "{}"}
    return tensors, meta


def _mutations():
    """(name, function(tensors, meta) -> None mutating them, expected message part)."""
    def drop(key):
        return lambda t, m: t.pop(key)

    def setm(key, value):
        return lambda t, m: m.__setitem__(key, value)

    def sett(key, value):
        return lambda t, m: t.__setitem__(key, value)

    return [
        ("no marker", lambda t, m: m.pop("format"), "format marker"),
        ("foreign format", setm("format", "pytorch"), "format is 'pytorch'"),
        ("version", setm("format_version", "99"), "version '99'"),
        ("missing tensor", drop("b.2"), "missing ['b.2']"),
        ("extra tensor", sett("W.3", np.zeros((2, 3))), "unexpected ['W.3']"),
        ("bad shape", sett("W.1", np.zeros((5, 5))), "shape (5, 5)"),
        ("dtype mismatch", sett("W.1", np.zeros((5, 4), np.float32)), "dtype float32"),
        ("int tensor", sett("W.1", np.zeros((5, 4), np.int64)), "dtype 'I64'"),
        ("nan", sett("b.1", np.array([0, np.nan, 0, 0, 0.0])), "NaN or inf"),
        ("inf", sett("W.2", np.full((3, 5), np.inf)), "NaN or inf"),
        ("sizes not json", setm("sizes", "[4, 5"), "'sizes' is not valid JSON"),
        ("sizes wrong", setm("sizes", "[4, 6, 3]"), "shape"),
        ("sizes negative", setm("sizes", "[4, -5, 3]"), "positive integers"),
        ("activation unknown", setm("activations", '["tanh", "nope"]'), "unknown activation"),
        ("activation count", setm("activations", '["tanh"]'), "activations must list 2"),
        ("softmax hidden", setm("activations", '["softmax", "softmax"]'), "output"),
        ("dtype meta", setm("dtype", "int8"), "dtype must be"),
        ("meta not object", setm("meta", "[1, 2]"), "JSON object"),
        ("meta missing", lambda t, m: m.pop("meta"), "'meta' is missing"),
    ]


@pytest.mark.parametrize("name, mutate, message", _mutations(), ids=[m[0] for m in _mutations()])
def test_refuses_mutated_files(tmp_path, name, mutate, message):
    tensors, meta = _valid_parts()
    mutate(tensors, meta)
    path = tmp_path / "bad.safetensors"
    _save_raw(path, tensors, meta)
    with pytest.raises(ValueError) as info:
        dio.load_model(path)
    assert str(path) in str(info.value) and message in str(info.value)


@pytest.mark.smoke
def test_refuses_pickle_zip_truncated_and_foreign(tmp_path, model_file):
    cases = {
        "pickle.pkl": pickle.dumps({"W": np.zeros(3)}),
        "torch.pt": b"PK\x03\x04" + b"\0" * 100,
        "empty": b"",
        "short": b"\x01\x02",
        "truncated": model_file.read_bytes()[:-7],
        "header_only": model_file.read_bytes()[:40],
        "text.csv": b"a,b\n1,2\n",
        "huge_header": struct.pack("<Q", 2**63) + b"{}",
        "not_json": struct.pack("<Q", 4) + b"abcd",
        "json_list": struct.pack("<Q", 2) + b"[]",
    }
    from safetensors.numpy import save

    cases["foreign"] = save({"weight": np.zeros((2, 2))}, metadata={"format": "pt"})
    cases["no_metadata"] = save({"W.1": np.zeros((2, 2))})
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=str(path).replace("\\", "\\\\")):
            dio.load_model(path)
    with pytest.raises(ValueError, match="never loads pickles"):
        dio.load_model(tmp_path / "pickle.pkl")
    with pytest.raises(FileNotFoundError):
        dio.load_model(tmp_path / "absent.safetensors")
    with pytest.raises(ValueError, match="folder"):
        dio.load_model(tmp_path)


def test_checkpoint_is_not_a_model_and_vice_versa(tmp_path, model_file):
    net = _net()
    ck = tmp_path / "ck.safetensors"
    dio.save_checkpoint(ck, net, {"t": 3, "v.W.1": np.ones((5, 4))},
                        rng_state=np.random.default_rng(0).bit_generator.state, epoch=2,
                        history=[{"epoch": 1, "loss": 1.0}])
    with pytest.raises(ValueError, match="expected 'deltaprop'"):
        dio.load_model(ck)
    with pytest.raises(ValueError, match="expected 'deltaprop-checkpoint'"):
        dio.load_checkpoint(model_file)
    back = dio.load_checkpoint(ck)
    assert back["epoch"] == 2 and back["opt_state"]["t"] == 3
    assert np.array_equal(back["opt_state"]["v.W.1"], np.ones((5, 4)))
    rng = np.random.default_rng()
    rng.bit_generator.state = back["rng_state"]
    assert rng.integers(1 << 30) == np.random.default_rng(0).integers(1 << 30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_random_bytes_always_value_error(tmp_path, data):
    path = tmp_path / "random.bin"
    path.write_bytes(data)
    with pytest.raises(ValueError):
        dio.load_model(path)


_VALID = None


def _valid_bytes():
    global _VALID
    if _VALID is None:
        from safetensors.numpy import save

        tensors, meta = _valid_parts()
        _VALID = save(tensors, metadata=meta)
    return _VALID


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1,
                      max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_mutated_valid_file_loads_or_value_error(tmp_path, edits, cut):
    """Flip bytes (header or data) and/or truncate: a valid network or ValueError, nothing else."""
    data = bytearray(_valid_bytes())
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    path = tmp_path / "mutated.safetensors"
    path.write_bytes(bytes(data))
    try:
        net, meta = dio.load_model(path)
    except ValueError:
        return
    # whatever survived the checks is a well-formed, finite network
    assert all(np.all(np.isfinite(w)) for w in net.W[1:])
    assert isinstance(meta, dict)


# --- standardisation: a file that says it has one carries a consistent one ---------------

STD4 = {"mean": [0.0, 1.0, 2.0, 3.0], "scale": [1.0, 2.0, 3.0, 4.0]}
RUN = {"settings": {"optimizer": "adam"}, "history": {"epochs": 3}}  # what `train` writes


@pytest.mark.parametrize("flag, meta, message", [
    ("true", {}, "says its inputs are standardised but meta lacks 'standardization'"),
    ("true", {"standardization": None}, "lacks 'standardization'"),
    (None, RUN, "lacks 'standardization'"),  # a `train` file from before the marker
    ("true", {"standardization": {"mean": STD4["mean"]}}, "lacks the key 'scale'"),
    ("true", {"standardization": {}}, "lacks the keys 'mean', 'scale'"),
    ("true", {"standardization": {"mean": [0.0] * 3, "scale": [1.0] * 3}},
     "'mean' has 3 values but the model has n_0 = 4 inputs"),
    ("true", {"standardization": {"mean": [0.0] * 4, "scale": [1.0, 0.0, 1.0, 1.0]}},
     "'scale' holds a value that is not finite or not > 0"),
    ("true", {"standardization": {"mean": ["a"] * 4, "scale": [1.0] * 4}},
     "'mean' must be a list of numbers"),
    ("false", {"standardization": STD4}, "'standardized' is 'false' but meta holds"),
    ("yes", {"standardization": STD4}, "'standardized' must be 'true' or 'false'"),
], ids=["no-std", "std-null", "legacy-train-file", "no-scale", "no-keys", "length", "scale-0",
        "not-numbers", "false-but-has", "bad-flag"])
def test_standardisation_missing_or_inconsistent_is_an_error(tmp_path, flag, meta, message):
    """A digits model without its standardisation evaluated at 0.78 instead of 0.96,
    unwarned: now the file is refused, naming itself and the missing or bad keys."""
    tensors, header = _valid_parts()
    header["meta"] = json.dumps(meta)
    if flag is not None:
        header["standardized"] = flag
    path = tmp_path / "stripped.safetensors"
    _save_raw(path, tensors, header)
    with pytest.raises(ValueError) as info:
        dio.load_model(path)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)


@pytest.mark.parametrize("flag, meta", [("true", {"standardization": STD4}), ("false", {}),
                                        (None, {}), (None, {"standardization": STD4, **RUN}),
                                        ("false", RUN)])
def test_consistent_standardisation_loads(tmp_path, flag, meta):
    tensors, header = _valid_parts()
    header["meta"] = json.dumps(meta)
    if flag is not None:
        header["standardized"] = flag
    _save_raw(tmp_path / "ok.safetensors", tensors, header)
    assert dio.load_model(tmp_path / "ok.safetensors")[1] == meta


def test_save_model_writes_the_marker_and_refuses_a_bad_standardisation(tmp_path):
    from safetensors import safe_open

    for meta, flag in ((META, "true"), ({"loss": "mse"}, "false")):
        dio.save_model(tmp_path / f"{flag}.safetensors", _net(), meta)
        with safe_open(tmp_path / f"{flag}.safetensors", "np") as f:
            assert f.metadata()["standardized"] == flag
    with pytest.raises(ValueError, match=r"meta\['standardization'\] 'scale' has 2 values but "
                                         r"the model has n_0 = 4"):
        dio.save_model(tmp_path / "bad.safetensors", _net(),
                       {"standardization": {"mean": [0.0] * 4, "scale": [1.0, 1.0]}})
    assert not (tmp_path / "bad.safetensors").exists()


# --- write errors name the user's file, never the temporary one ---------------------------

def test_write_errors_name_the_file_and_what_to_do(tmp_path, monkeypatch):
    import errno

    with pytest.raises(FileNotFoundError) as info:
        dio.atomic_write_text(tmp_path / "no" / "x.json", "{}")
    msg = str(info.value)
    assert msg == f"cannot write {tmp_path / 'no' / 'x.json'}: folder {tmp_path / 'no'} does " \
                  "not exist; create it first"
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        dio.atomic_write_text(tmp_path, "{}")

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device", src)

    monkeypatch.setattr(dio.os, "replace", full)
    with pytest.raises(OSError) as info:
        dio.atomic_write_text(tmp_path / "y.json", "{}")
    assert ".tmp" not in str(info.value) and "[Errno" not in str(info.value)
    assert str(info.value).startswith(f"cannot write {tmp_path / 'y.json'}: no space left")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone


def test_remove_temp_files_clears_only_temp_files(tmp_path):
    names = [".model.safetensors.0123456789ab.tmp", ".rows.json.a1b2c3d4e5f6.tmp"]
    keep = ["model.safetensors", ".hidden.tmp", ".x.0123.tmp", "notes.txt"]
    for n in names + keep:
        (tmp_path / n).write_text("x")
    gone = dio.remove_temp_files(tmp_path, ["rows.json"])
    assert [p.name for p in gone] == [names[1]]
    assert sorted(p.name for p in dio.remove_temp_files(tmp_path)) == [names[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_a_run_folder_or_the_other_kind_of_file_says_what_to_give(tmp_path, model_file):
    # the natural first-use slips: `evaluate runs/X ...`, or the checkpoint for the model
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes(Path(model_file).read_bytes())
    dio.save_checkpoint(run / "checkpoint.safetensors", _net(), {"t": 1},
                        rng_state=np.random.default_rng(0).bit_generator.state, epoch=1,
                        history=[])
    with pytest.raises(ValueError, match=f"is a folder, not a deltaprop file: give "
                                         f"{re.escape(str(run / 'model.safetensors'))}$"):
        dio.load_model(run)
    with pytest.raises(ValueError, match="give .*checkpoint.safetensors$"):
        dio.load_checkpoint(run)
    with pytest.raises(ValueError, match=r"a training checkpoint, read by train --resume"):
        dio.load_model(run / "checkpoint.safetensors")
    with pytest.raises(ValueError, match=r"\(a model file; a run's checkpoint is its "):
        dio.load_checkpoint(run / "model.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is a folder, not a deltaprop file$"):
        dio.load_model(tmp_path / "empty")  # no model inside: no hint
