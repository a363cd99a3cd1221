import subprocess
import sys


def test_core_imports_with_numpy_alone():
    """`import deltaprop` pulls in no heavy or optional library."""
    code = ("import sys, deltaprop; heavy = {'torch', 'dask', 'scipy', 'matplotlib', "
            "'sklearn', 'safetensors', 'tqdm'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_bad_input_is_one_line_exit_2():
    out = subprocess.run([sys.executable, "-m", "deltaprop", "gradcheck", "--activations", "foo"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "unknown activation 'foo'" in out.stderr


def test_gradcheck_bad_sizes_name_the_flag(capsys):
    from deltaprop.cli import main

    assert main(["gradcheck", "--sizes", "4,,3"]) == 2
    assert "--sizes must be comma-separated integers" in capsys.readouterr().err
