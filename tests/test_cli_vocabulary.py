"""One vocabulary of flags (issue 26): a table of meanings with the one flag each is spelled with, a walk over every
command's parser that fails on a second visible name for a meaning, the old spellings still accepted (hidden, with
a one-line note), and the progress bar's rule (only on a terminal unless asked) on every command that has one."""

from __future__ import annotations

import argparse
import os
import pty
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from alexnet.cli import build_parser, main
from alexnet.cli.vocabulary import DeprecatedAlias, JsonSwitch


@dataclass(frozen=True)
class Meaning:
    name: str
    canonical: str  # the one visible flag for it
    dests: frozenset  # argparse dests that carry this meaning, whatever the flag is called
    synonyms: frozenset = field(default_factory=frozenset)  # other spellings seen in the wild (and here, before)
    metavar: str | None = None  # what the canonical flag's value is called, where that tells meanings apart


MEANINGS = [
    Meaning("a folder to write into", "--output-dir", frozenset({"output_dir", "out_dir", "outdir", "save_dir"}),
            frozenset({"--out-dir", "--outdir", "--output-folder", "--save-dir", "--dir"}), metavar="DIR"),
    Meaning("the one file to write", "--output", frozenset({"output", "output_file", "out_file"}),
            frozenset({"--output-file", "--out-file", "--out", "-o"}), metavar="FILE"),
    Meaning("how many results", "--top-k", frozenset({"top_k", "topk", "k", "num_results"}),
            frozenset({"--k", "-k", "--topk", "--num-results"})),
    Meaning("the run or checkpoint to read", "--checkpoint",
            frozenset({"checkpoint", "ckpt", "run", "run_path", "runs", "weights"}),
            frozenset({"--ckpt", "--run", "--weights", "--checkpoint-path", "--model-path"}), metavar="RUN"),
    Meaning("the data to read", "--data", frozenset({"data", "source", "dataset", "data_dir"}),
            frozenset({"--in", "--input", "--dataset", "--data-dir", "--source", "--src"})),
    Meaning("where torchvision's datasets live", "--data-root", frozenset({"data_root", "root", "dataset_root"}),
            frozenset({"--root", "--dataset-root"})),
    Meaning("the side of the model's input", "--image-size", frozenset({"image_size", "input_size", "img_size"}),
            frozenset({"--input-size", "--img-size"})),
    Meaning("JSON on stdout", "--json", frozenset({"json", "as_json"}), frozenset({"--as-json", "--json-output"})),
    Meaning("a progress bar", "--progress", frozenset({"progress", "show_progress"}), frozenset({"--show-progress"})),
]
# Commands that read a trained run: each names it with --checkpoint.
READERS = ("eval", "predict", "features", "neighbours", "inspect", "export", "serve", "report")
# `alexnet ablate` takes every `alexnet train` flag for its arms, hidden from its --help to keep it short (dest o_*).
OVERRIDE_PREFIX = "o_"


def parsers(parser=None, prog="alexnet"):
    """(prog, parser) for the top parser, every subcommand and every sub-subcommand (alexnet data check, ...)."""
    parser = parser or build_parser()
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{prog} {name}")


def flags(parser):
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def meaning_of(option: str, action: argparse.Action) -> Meaning | None:
    dest = action.dest.removeprefix(OVERRIDE_PREFIX)
    for m in MEANINGS:
        if option in (m.canonical, "--no-" + m.canonical[2:]) or option in m.synonyms or dest in m.dests:
            return m
    return None


def test_the_table_is_consistent():
    spellings = [s for m in MEANINGS for s in (m.canonical, *m.synonyms)]
    assert len(spellings) == len(set(spellings))
    dests = [d for m in MEANINGS for d in m.dests]
    assert len(dests) == len(set(dests))
    assert all(m.canonical[2:].replace("-", "_") in m.dests for m in MEANINGS)


def test_no_meaning_has_a_second_visible_flag():
    wrong = []
    for prog, parser in parsers():
        for action in flags(parser):
            if action.help == argparse.SUPPRESS:
                continue
            for option in action.option_strings:
                m = meaning_of(option, action)
                if m is None:
                    continue
                if option not in (m.canonical, "--no-" + m.canonical[2:]):
                    wrong.append(f"{prog} {option}: {m.name} is spelled {m.canonical}")
                elif action.dest.removeprefix(OVERRIDE_PREFIX) != m.canonical[2:].replace("-", "_"):
                    wrong.append(f"{prog} {option}: dest {action.dest!r}, not the meaning's")
                elif m.metavar and action.metavar != m.metavar:
                    wrong.append(f"{prog} {option} {action.metavar}: its value is {m.canonical} {m.metavar}")
    assert not wrong, "\n".join(wrong)


def test_json_is_a_switch_and_progress_is_on_off_with_the_terminal_rule_everywhere():
    for prog, parser in parsers():
        for action in flags(parser):
            if "--json" in action.option_strings:  # a switch; JsonSwitch also takes an old FILE, hidden
                assert action.nargs == 0 or isinstance(action, JsonSwitch), prog
                assert (action.dest, action.const, action.default) == ("json", True, False), prog
            if action.dest == "progress":
                assert isinstance(action, argparse.BooleanOptionalAction), prog
                assert action.option_strings == ["--progress", "--no-progress"] and action.default is None, prog


def test_every_hidden_flag_is_an_old_spelling_that_stores_into_the_canonical_flag():
    seen = set()
    for prog, parser in parsers():
        visible = {s: a for a in flags(parser) if a.help != argparse.SUPPRESS for s in a.option_strings}
        for action in flags(parser):
            if isinstance(action, JsonSwitch):  # --json FILE: the FILE goes where --output FILE puts it
                assert visible["--output"].dest == action.old_value_to, prog
                seen.add(f"{prog} --json FILE")
            if action.help != argparse.SUPPRESS:
                continue
            if prog == "alexnet ablate" and action.dest.startswith(OVERRIDE_PREFIX):
                continue  # `alexnet train`'s own flags, hidden for brevity (test_ablate_*)
            (option,) = action.option_strings
            assert isinstance(action, DeprecatedAlias), f"{prog} {option}: hidden but not an old spelling"
            canonical = visible[action.canonical]
            assert action.dest == canonical.dest and action.default is argparse.SUPPRESS, f"{prog} {option}"
            m = meaning_of(option, action)
            assert m is None or m.canonical == action.canonical, f"{prog} {option} -> {action.canonical}"
            seen.add(f"{prog} {option}")
    assert seen == {"alexnet neighbours --in", "alexnet neighbours --k", "alexnet data check --root",
                    "alexnet data cache --root", "alexnet data make-shapes --output", "alexnet summary --input-size",
                    "alexnet bench --json FILE"}


def test_every_command_that_reads_a_run_takes_checkpoint():
    by_prog = dict(parsers())
    for name in READERS:
        options = {s for a in flags(by_prog[f"alexnet {name}"]) for s in a.option_strings}
        assert "--checkpoint" in options, name


OLD_AND_NEW = [
    (["neighbours", "--checkpoint", "r", "q.jpg", "--in", "d", "--k", "3"],
     ["neighbours", "--checkpoint", "r", "q.jpg", "--data", "d", "--top-k", "3"]),
    (["data", "check", "zoo", "--root", "dl"], ["data", "check", "zoo", "--data-root", "dl"]),
    (["data", "cache", "zoo", "--root", "dl"], ["data", "cache", "zoo", "--data-root", "dl"]),
    (["data", "make-shapes", "--output", "out"], ["data", "make-shapes", "--output-dir", "out"]),
    (["summary", "alexnet", "--input-size", "224"], ["summary", "alexnet", "--image-size", "224"]),
    (["bench", "--json", "b.json"], ["bench", "--output", "b.json"]),
]


@pytest.mark.parametrize(("old", "new"), OLD_AND_NEW, ids=lambda argv: " ".join(argv[:2]))
def test_an_old_spelling_parses_as_the_new_one_with_a_one_line_note(old, new, capsys):
    new_args = build_parser().parse_args(new)
    assert capsys.readouterr().err == ""
    old_args = build_parser().parse_args(old)
    note = capsys.readouterr().err
    assert vars(old_args) == vars(new_args)
    renamed = [s for s in old if s.startswith("--") and s not in new]
    assert note.count("\n") == len(renamed) >= 1 and "is deprecated, use --" in note  # one line per old flag


def test_bench_json_alone_is_the_switch():
    args = build_parser().parse_args(["bench", "--json", "--only", "ceilings"])
    assert args.json is True and args.output is None and args.only == ["ceilings"]
    usage = dict(parsers())["alexnet bench"].format_help()
    assert "[--json]" in usage and "--json [" not in usage


def test_neighbours_without_data_is_a_one_line_error(capsys):
    assert main(["neighbours", "--checkpoint", "r", "q.jpg"]) == 2
    assert capsys.readouterr().err == "alexnet neighbours: error: --data DATA is required: the images to search\n"


def test_serve_and_report_name_the_run_with_checkpoint_or_positionally(capsys, tmp_path):
    pytest.importorskip("fastapi")
    assert main(["report"]) == 2
    assert "name a run: --checkpoint RUN" in capsys.readouterr().err
    assert main(["report", "--checkpoint", "a", "b"]) == 2
    assert "one run per report, got two: a and b" in capsys.readouterr().err
    for argv in (["--checkpoint", str(tmp_path / "nowhere")], [str(tmp_path / "nowhere")]):
        assert main(["serve", *argv, "--port", "0"]) == 2
        assert "nowhere: checkpoint not found" in capsys.readouterr().err
    args = build_parser().parse_args(["serve", "--checkpoint", "a", "--checkpoint", "b", "c"])
    assert (args.checkpoint, args.runs) == (["a", "b"], ["c"])


def test_the_bar_follows_the_terminal_unless_asked():
    # A real terminal (a pseudo-terminal), not a stand-in: the rule reads sys.stderr.isatty().
    code = "from alexnet.cli.vocabulary import progress_wanted as w; print(w(None), w(True), w(False))"
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert piped.stdout.split() == ["False", "True", "False"]
    leader, follower = pty.openpty()
    try:
        on_tty = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=follower, text=True,
                                timeout=60)
    finally:
        os.close(follower)
        os.close(leader)
    assert on_tty.stdout.split() == ["True", "True", "False"]


def test_report_draws_no_bar_into_a_log_unless_asked(trained, tmp_path, capsys):
    # In this process stderr is pytest's capture, not a terminal: as in a log.
    quiet, asked = tmp_path / "quiet", tmp_path / "asked"  # two copies: each builds its index
    shutil.copytree(trained[1], quiet)
    shutil.copytree(trained[1], asked)
    assert main(["report", "--checkpoint", str(quiet), "--output", str(tmp_path / "q.html"), "--samples", "0"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["report", str(asked), "--output", str(tmp_path / "a.html"), "--samples", "0", "--progress"]) == 0
    assert "indexing asked" in capsys.readouterr().err


def test_features_draws_its_bar_when_asked(trained, tmp_path, capsys):
    data, run = trained
    out = str(tmp_path / "f.npy")
    assert main(["features", "--checkpoint", str(run), str(data / "val"), "--output", out, "--progress"]) == 0
    assert "img" in capsys.readouterr().err  # tqdm's count of images
    assert main(["features", "--checkpoint", str(run), str(data / "val"), "--output", out]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_serve_draws_no_bar_into_a_log(trained, tmp_path):
    pytest.importorskip("fastapi")
    run = tmp_path / "run"
    shutil.copytree(trained[1], run)
    proc = subprocess.Popen([sys.executable, "-m", "alexnet", "serve", "--checkpoint", str(run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once the index is built and the page is up
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert "alexnet serve: 1 run(s) at http://127.0.0.1:" in line, err
    assert "indexing" not in err and "t-SNE" not in err
