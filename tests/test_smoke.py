import subprocess
import sys

import pytest

pytestmark = pytest.mark.smoke  # every test here is in the subset CI runs at the lowest versions


def test_core_imports_with_numpy_alone():
    """`import deltaprop` pulls in no heavy or optional library."""
    code = ("import sys, deltaprop; heavy = {'torch', 'dask', 'scipy', 'matplotlib', "
            "'sklearn', 'safetensors', 'tqdm'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_numpy_training_never_imports_torch(tmp_path):
    """``--threads`` limits PyTorch only where torch is already loaded: a NumPy run (here
    with torch installed or not) does not import it."""
    code = ("import sys; from deltaprop.app.cli import main; "
            f"rc = main(['train', '--data', 'iris', '--hidden', '4', '--epochs', '1', '--quiet', "
            f"'--threads', '1', '--out', {str(tmp_path / 'r')!r}]); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "False"], out.stderr


def test_cli_bad_input_is_one_line_exit_2():
    out = subprocess.run([sys.executable, "-m", "deltaprop", "gradcheck", "--activations", "foo"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "unknown activation 'foo'" in out.stderr


def test_gradcheck_bad_sizes_name_the_flag(capsys):
    from deltaprop.app.cli import main

    assert main(["gradcheck", "--sizes", "4,,3"]) == 2
    assert "--sizes must be comma-separated integers" in capsys.readouterr().err



def test_cli_missing_optional_package_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    """A command that needs an extra (here dask, hidden) names it instead of a traceback."""
    import builtins

    from deltaprop.app.cli import main

    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    for mod in [m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")]:
        monkeypatch.delitem(sys.modules, mod)
    code = main(["sweep", "--out", str(tmp_path / "sweep.csv"), "--depth", "3", "--width", "4",
                 "--K", "2", "--samples", "4", "--no-plot"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "optional package 'dask'" in err and "deltaprop[dask]" in err
    assert not (tmp_path / "sweep.csv").exists()  # failed before writing anything
