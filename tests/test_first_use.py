"""Trust on first use (issue 12), as a new user meets it on the command line.

Each test is one promise of the issue, checked through ``deltaprop.app.cli.main`` exactly as the
console script runs it: every subcommand documents and takes the common flags, bad input
ends in one line and exit 2, a user's file is never replaced without ``--force``, gradcheck
says PASS or FAIL, divergence stops the run with exit 1 and the health report says why.
All cases are small (iris, a few epochs, tiny studies): the file runs in a few seconds.
"""

from __future__ import annotations

import json
import os
import pickle
import re

import numpy as np
import pytest

from deltaprop.app.cli import build_parser, main

pytestmark = pytest.mark.smoke

COMMANDS = ["gradcheck", "trace", "explain", "train", "evaluate", "predict", "info", "stats",
            "sweep", "theory", "jacobian"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model file trained on iris for 2 epochs (its run folder's model.safetensors)."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "--data", "iris", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    return out / "model.safetensors"


def one_error_line(capsys, argv, status=2):
    """Run ``deltaprop argv``; assert the exit status and one 'deltaprop: error:' line."""
    assert main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("deltaprop: error: "), err
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------ the common flags

def test_every_command_is_listed_and_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    assert sorted(sub.choices) == sorted(COMMANDS)
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: deltaprop {name}")
        assert "--config" in out and "--quiet" in out, name  # issue 12: on every command


@pytest.mark.parametrize("argv", [
    ["gradcheck"], ["trace"], ["explain"], ["theory", "--sigma-w2", "1.5"],
    ["jacobian", "--sigma-w2", "1", "--width", "8", "--depth", "2", "--K", "2",
     "--samples", "4"],
    ["stats", "--hidden", "6", "--K", "2", "--samples", "8", "--bins", "0"],
], ids=lambda a: a[0])
def test_json_is_one_valid_document_and_quiet_leaves_stderr_empty(capsys, argv):
    assert main([*argv, "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)
    assert captured.err == ""


def test_evaluate_and_info_json(capsys, model):
    assert main(["evaluate", str(model), "iris", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["m"] == 150 and 0 <= res["accuracy"] <= 1
    assert main(["info", str(model), "--json"]) == 0
    json.loads(capsys.readouterr().out)


def test_evaluate_takes_a_config_file_and_the_flag_wins(capsys, model, tmp_path):
    cfg = tmp_path / "ev.toml"
    cfg.write_text("json = true\n")
    assert main(["evaluate", str(model), "iris", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)["m"] == 150
    cfg.write_text("no_such_setting = 1\n")
    err = one_error_line(capsys, ["evaluate", str(model), "iris", "--config", str(cfg)])
    assert "unknown setting 'no_such_setting'" in err


def test_quiet_keeps_notes_off_stderr_on_evaluate_and_predict(capsys, model, tmp_path):
    # a CSV written by pandas with its index: the loader's note names the dropped column
    rows = "\n".join(f"{i},5.1,3.5,1.4,0.2,setosa" for i in range(6))
    data = tmp_path / "pandas.csv"
    data.write_text(",a,b,c,d,target\n" + rows + "\n")
    assert main(["evaluate", str(model), str(data)]) == 0
    assert "deltaprop: note:" in capsys.readouterr().err
    for argv in (["evaluate", str(model), str(data)], ["predict", str(model), str(data)]):
        assert main([*argv, "--quiet"]) == 0
        captured = capsys.readouterr()
        assert captured.err == "" and captured.out


# ----------------------------------------------------------------- bad input: one line, exit 2

def _bad_files(tmp):
    """name -> path of files a user might give by mistake."""
    from safetensors.numpy import save_file

    (tmp / "nan.csv").write_text("a,b,c,d,y\n1,2,3,4,setosa\nnan,1,1,1,setosa\n")
    (tmp / "inf.csv").write_text("a,b,c,d,y\n1,2,3,4,setosa\ninf,1,1,1,setosa\n")
    (tmp / "narrow.csv").write_text("a,b,y\n1,2,setosa\n3,4,versicolor\n")
    (tmp / "label.csv").write_text("a,b,c,d,y\n1,2,3,4,tulip\n")
    (tmp / "empty.safetensors").write_bytes(b"")
    (tmp / "random.safetensors").write_bytes(np.random.default_rng(0).bytes(300))
    with open(tmp / "pickle.safetensors", "wb") as fh:
        pickle.dump({"W.1": [1.0]}, fh)
    save_file({"weight": np.zeros(3)}, str(tmp / "foreign.safetensors"))
    (tmp / "folder").mkdir()
    return tmp


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "{model}", "{tmp}/nan.csv"], "NaN or inf"),
    (["evaluate", "{model}", "{tmp}/inf.csv"], "NaN or inf"),
    (["evaluate", "{model}", "{tmp}/narrow.csv"], "expects n_0 = 4 input columns"),
    (["evaluate", "{model}", "{tmp}/label.csv"], "class tulip was not seen in training"),
    (["evaluate", "{tmp}/empty.safetensors", "iris"], "too short"),
    (["evaluate", "{tmp}/random.safetensors", "iris"], "not a valid deltaprop file"),
    (["info", "{tmp}/pickle.safetensors"], "never loads pickles"),
    (["info", "{tmp}/foreign.safetensors"], "foreign safetensors"),
    (["info", "{tmp}/folder"], "is a folder"),
    (["predict", "{model}", "{tmp}/folder"], "is a directory"),
    (["train", "--data", "{tmp}/nan.csv", "--out", "{tmp}/r"], "NaN or inf"),
    (["train", "--data", "iris", "--activation", "nosuch", "--out", "{tmp}/r"],
     "unknown activation 'nosuch'"),
    (["train", "--data", "iris", "--hidden", "100000000000", "--out", "{tmp}/r"],
     "would need about"),
    (["gradcheck", "--activations", "tanh,nosuch"], "unknown activation 'nosuch'"),
    (["stats", "--weight-std", "-0.5"], "--weight-std must be"),
    (["stats", "--inputs", "gaussian", "--input-var", "-1"], "--input-var must be"),
    (["trace", "{tmp}/folder"], "folder"),
    (["explain", "--config", "{tmp}/folder"], "is a folder"),
    (["sweep", "--out", "{tmp}/table.xlsx"], ".csv and .parquet"),
    # the message names the flag the user gave, not the library's parameter
    (["explain", "--step", "0"], "--step must be a positive integer"),
    (["explain", "--exercise", "--samples", "-2"], "--samples must be a positive integer"),
    (["explain", "--precision", "20"], "--precision must be in 0..17"),
    (["explain", "--rtol", "nan"], "--rtol must be a finite number > 0"),
    (["jacobian", "--sigma-w2", "1", "--samples", "-1"], "--samples must be a positive"),
    (["jacobian", "--sigma-w2", "1", "--K", "0"], "--K must be a positive integer"),
    (["jacobian", "--sigma-w2", "1", "--depth", "0"], "--depth must be a positive integer"),
], ids=lambda v: v if isinstance(v, str) else "-".join(v[:2]))
def test_bad_input_is_one_line_and_exit_2(capsys, model, tmp_path, argv, message):
    tmp = _bad_files(tmp_path)
    argv = [a.format(model=model, tmp=tmp) for a in argv]
    err = one_error_line(capsys, argv)
    assert message in err
    assert not (tmp / "r").exists()  # nothing written for a refused run


def test_running_out_of_memory_is_one_line(capsys, monkeypatch):
    # what `deltaprop theory --sigma-w2 1e10` (tanh) met: numpy's _ArrayMemoryError
    import deltaprop.theory.signal as signal

    def too_big(*args, **kwargs):
        np.empty((2192, 14399944 * 10**6))

    monkeypatch.setattr(signal, "signal_theory", too_big)
    err = one_error_line(capsys, ["theory", "--sigma-w2", "1e10"])
    assert "not enough memory (Unable to allocate" in err and "ask for less" in err


# ------------------------------------------------------------ a user's files are never lost

@pytest.mark.parametrize("argv", [
    ["predict", "{model}", "iris", "--out", "{file}.csv"],
    ["explain", "--out", "{file}.html"],
    ["theory", "--sigma-w2", "1.5", "--phase-diagram", "{file}.png"],
    ["jacobian", "--sigma-w2", "1", "--width", "8", "--depth", "2", "--K", "2", "--samples",
     "4", "--density", "{file}.png"],
    ["sweep", "--serial", "--K", "2", "--samples", "8", "--depth", "3", "--width", "4",
     "--out", "{file}.csv"],
], ids=lambda a: a[0])
def test_an_existing_file_is_refused_without_force(capsys, model, tmp_path, argv):
    argv = [a.format(model=model, file=tmp_path / "mine") for a in argv]
    target = tmp_path / os.path.basename(argv[-1])
    target.write_text("the user's own file\n")
    err = one_error_line(capsys, argv)
    assert "--force" in err
    assert target.read_text() == "the user's own file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # nothing beside it


def test_a_folder_holding_files_or_a_run_is_refused(capsys, model, tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "notes.txt").write_text("mine")
    err = one_error_line(capsys, ["stats", "--hidden", "6", "--K", "2", "--samples", "8",
                                  "--out", str(study)])
    assert "--force" in err and os.listdir(study) == ["notes.txt"]
    before = model.read_bytes()
    err = one_error_line(capsys, ["train", "--data", "iris", "--epochs", "1",
                                  "--out", str(model.parent)])
    assert "already holds a run" in err and model.read_bytes() == before


# --------------------------------------------------------------- saying when it went wrong

def test_gradcheck_says_pass_or_fail_and_exits_1_on_fail(capsys):
    assert main(["gradcheck"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS: max relative error")
    assert main(["gradcheck", "--tol", "1e-30"]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("FAIL: max relative error")


def test_divergence_stops_the_run_with_exit_1(capsys, tmp_path):
    err = one_error_line(capsys, ["train", "--data", "iris", "--epochs", "5", "--lr", "1e6",
                                  "--out", str(tmp_path / "r")], status=1)
    assert "training diverged" in err and "smaller learning rate" in err


def test_health_report_in_output_and_metrics(capsys, tmp_path):
    # lr 1e6 saturates every tanh unit in one epoch: delta = 0 for every sample
    out = tmp_path / "r"
    assert main(["train", "--data", "iris", "--epochs", "1", "--lr", "1e6", "--divergence",
                 "1e300", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "deltaprop: warning: layer 1: 128 of 128 tanh units are dead" in err
    health = json.loads((out / "metrics.json").read_text())["health"]
    assert [h["kind"] for h in health] == ["dead"] and health[0]["layer"] == 1


def test_phase_diagram_shows_progress_per_row_and_draws_the_same_grid(tmp_path, monkeypatch,
                                                                       capsys):
    from deltaprop.app import plot
    from deltaprop.app.cli import theory as cli_theory
    from deltaprop.theory.signal import phase_diagram

    monkeypatch.setattr(cli_theory, "GRID", (5, 3))  # a small grid: the test is of the bar
    bars, drawn = [], []

    class Bar:
        def __init__(self, quiet, total, desc, unit="it"):
            self.total, self.desc, self.n, self.closed = total, desc, 0, False
            bars.append(self)

        def update(self):
            self.n += 1

        def close(self):
            self.closed = True

    def progress_bar(quiet, total, desc, unit="it"):
        return None if quiet else Bar(quiet, total, desc, unit)

    def figure(data, **kw):
        drawn.append(data)
        return real_figure(data, **kw)

    real_figure = plot.phase_diagram
    monkeypatch.setattr(cli_theory, "progress_bar", progress_bar)
    monkeypatch.setattr(plot, "phase_diagram", figure)
    png = tmp_path / "pd.png"
    assert main(["theory", "--sigma-w2", "2.5", "--phase-diagram", str(png)]) == 0
    assert [(b.desc, b.total, b.n, b.closed) for b in bars] == [("phase diagram", 3, 3, True)]
    assert capsys.readouterr().err == f"wrote {png}\n"
    whole = phase_diagram("tanh", drawn[0]["sigma_w2"], drawn[0]["sigma_b2"])
    for key in ("chi_1", "xi_c", "edge"):  # row by row gives the one-call grid exactly
        np.testing.assert_array_equal(drawn[0][key], whole[key])
    assert main(["theory", "--sigma-w2", "2.5", "--phase-diagram", str(png), "--force",
                 "--quiet"]) == 0
    assert len(bars) == 1 and capsys.readouterr().err == ""


# ------------------------------------------------------------- the audit's remaining slips

def test_huge_losses_print_in_scientific_notation(capsys, tmp_path):
    # lr 1e300 with divergence off: losses near 1e301 (were printed as 300-digit numbers)
    out = tmp_path / "r"
    assert main(["train", "--data", "iris", "--epochs", "1", "--lr", "1e300", "--divergence",
                 "1e308", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    for argv in (["info", str(out / "model.safetensors")],
                 ["evaluate", str(out / "model.safetensors"), "iris"]):
        assert main(argv) == 0
        text = capsys.readouterr().out
        assert "loss = " in text and "e+30" in text, text
        assert not re.search(r"\d{20}", text), text  # no 300-digit number


def test_predict_json(capsys, model, tmp_path):
    assert main(["predict", str(model), "iris", "--json", "--proba"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["classes"] == ["setosa", "versicolor", "virginica"]
    assert len(doc["predictions"]) == 150 and set(doc["predictions"]) <= set(doc["classes"])
    p = np.array(doc["probabilities"])
    assert p.shape == (150, 3) and np.allclose(p.sum(axis=1), 1)
    assert [doc["classes"][i] for i in p.argmax(axis=1)] == doc["predictions"]
    assert main(["predict", str(model), "iris"]) == 0  # the CSV names the same classes
    assert capsys.readouterr().out.split()[1:] == doc["predictions"]
    assert main(["predict", str(model), "iris", "--json", "--out", str(tmp_path / "p.json")]) == 0
    assert "probabilities" not in json.loads((tmp_path / "p.json").read_text())


@pytest.mark.parametrize("argv, message", [
    (["--val-split", "1.5"], "--val-split must be a fraction in [0, 1) of the samples, got 1.5"),
    (["--test-split", "-0.1"], "--test-split must be a fraction in [0, 1)"),
    (["--val-split", "0.5", "--test-split", "0.5"],
     "--val-split 0.5 and --test-split 0.5 leave no training samples of the 150"),
    (["--early-stopping", "0"], "--early-stopping (patience) must be an integer >= 1"),
    (["--divergence", "1"], "--divergence must be a factor > 1"),
    (["--epochs", "-1"], "--epochs must be an integer >= 0"),
], ids=lambda v: v if isinstance(v, str) else "-".join(v[:2]))
def test_train_messages_name_the_flag(capsys, tmp_path, argv, message):
    err = one_error_line(capsys, ["train", "--data", "iris", *argv, "--out", str(tmp_path / "r")])
    assert message in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, message", [
    (["--samples", "0"], "--samples must be >= 1 (samples m per network), got 0"),
    (["--K-chunk", "0"], "--K-chunk must be >= 1 (networks drawn at a time)"),  # 0 was K
    (["--theory-samples", "0"], "--theory-samples must be >= 1 (draws of the forward law)"),
    (["--hidden", "8,0"], "--hidden must be positive widths, got 8,0"),
], ids=lambda v: v if isinstance(v, str) else "-".join(v[:2]))
def test_stats_messages_name_the_flag(capsys, argv, message):
    err = one_error_line(capsys, ["stats", "--hidden", "6", "--K", "2", "--samples", "8", *argv])
    assert message in err


@pytest.mark.parametrize("argv, message", [
    (["stats", "--hidden", "5000", "--K", "2", "--samples", "4", "--bins", "0"],
     "the study (sizes 64-5000-10, K = 2 networks) would need about 0.15 GiB and 0.00977 "
     "GiB is available: use smaller --hidden widths"),
    (["stats", "--sizes", "16,5000,4", "--inputs", "gaussian", "--K", "2", "--samples", "4"],
     "use smaller --sizes widths"),
    (["jacobian", "--width", "300", "--depth", "2", "--K", "2", "--samples", "4"],
     "jacobian: 2 networks of sizes 300-...-300 (2 layers, widest 300) would need about "
     "0.0269 GiB and 0.00977 GiB is available: use a smaller --width or --depth"),
], ids=["stats-hidden", "stats-sizes", "jacobian"])
def test_a_study_too_big_for_memory_is_refused_up_front(capsys, monkeypatch, argv, message):
    # stats --hidden 1000000 ran 60 s at 6 GB silently: the estimate refuses before drawing
    import deltaprop.app.data

    monkeypatch.setattr(deltaprop.app.data, "available_memory", lambda: 10 * 2**20)
    err = one_error_line(capsys, argv)
    assert message in err


def test_memory_estimates_grow_with_the_study():
    from deltaprop.app.cli import jacobian, stats

    small = stats.estimate_memory([64, 64, 10], 16, m=1797)
    assert small < 2**30  # the default-sized studies are never refused on a laptop
    assert stats.estimate_memory([64, 10**6, 10], 2, m=4) > 5 * 2**30  # measured: 6 GB
    assert stats.estimate_memory([64, 64, 10], 16, m=1797, gradient_independence=True) > small
    assert stats.estimate_memory([64, 64, 10], 16, m=1797, forward="measured") < small
    assert jacobian.estimate_memory([128] * 17, 32, 4) < 2**30
    assert jacobian.estimate_memory([2000] * 3, 4, 4) > jacobian.estimate_memory([1000] * 3, 4, 4)


def test_xor_with_the_defaults_says_it_underfits(capsys, tmp_path):
    # Adam's default lr 0.001 for 30 epochs: loss 0.680 against log 2, test accuracy 0.575
    out = tmp_path / "r"
    assert main(["train", "--data", "xor", "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("deltaprop: warning: the network underfits") and err.count("\n") == 1
    assert "try a larger learning rate (--lr) or more epochs" in err
    health = json.loads((out / "metrics.json").read_text())["health"]
    assert [h["kind"] for h in health] == ["underfit"] and health[0]["value"] > 0.95
    assert main(["train", "--data", "xor", "--lr", "0.01", "--out", str(tmp_path / "ok"),
                 "--quiet"]) == 0  # the documented fix: no warning
    assert capsys.readouterr().err == ""
