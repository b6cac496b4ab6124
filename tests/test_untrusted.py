"""Checkpoints are untrusted input: every field is validated in one place, before anything is built from it.

Each fault is a real file: a real checkpoint in today's format (fixtures/tiny-v1.pt, alexnet-bn at width 1/32 on
classes cat/dog, as the record writes it back: format 2), changed in one field and written back with torch.save;
the faults only format 1 can hold are crafted in the committed format-1 file itself. It is read through
`load_checkpoint` and through the real `alexnet eval` / `alexnet predict` commands in-process, which must answer
exit status 2 and one line on stderr: no traceback, and no allocation of the absurd size the field asks for.
The validator is also fuzzed (ALEXNET_FUZZ_EXAMPLES=2000 searches longer than the default few seconds).
"""

import copy
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from alexnet import cli
from alexnet.errors import CheckpointError, short
from alexnet.predict import predict_files
from alexnet.store.checkpoint import load_checkpoint
from alexnet.store.safeload import check_torch_version
from alexnet.store.schema import REQUIRED_FIELDS
from alexnet.store.schema import validate as validate_checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "tiny-v1.pt"
MESSAGE_LIMIT = 600  # characters: a refusal echoes at most a short repr of the bad value


@pytest.fixture(scope="module")
def original():
    """Today's layout of the fixture (format 2)."""
    return load_checkpoint(FIXTURE).to_dict()


@pytest.fixture(scope="module")
def format_1():
    return torch.load(FIXTURE, map_location="cpu", weights_only=True)


def craft(original, tmp_path, change, name="crafted.pt"):
    """A copy of the fixture with `change(ckpt)` applied, saved as a real checkpoint file."""
    ckpt = copy.deepcopy(original)
    change(ckpt)
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def setter(*keys, value):
    def change(ckpt):
        node = ckpt
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change


def deleter(*keys):
    def change(ckpt):
        node = ckpt
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
    return change


def both(*changes):
    def change(ckpt):
        for c in changes:
            c(ckpt)
    return change


def state(*keys, value):
    """A change inside train_state."""
    return setter("train_state", *keys, value=value)


def model_args(**fields):
    return lambda ckpt: ckpt["model_args"].update(fields)


def image_size(size):
    return both(model_args(image_size=size), setter("image_size", value=size))


def wrong_shape(ckpt):
    ckpt["model"]["classifier.1.weight"] = torch.zeros(128, 33)  # fc6 takes 8 features at this size


def momentum_of_wrong_shape(ckpt):
    ckpt["train_state"]["optimizer"]["state"][0]["exp_avg"] = torch.zeros(7)


def parameter_listed_twice(ckpt):
    ckpt["train_state"]["optimizer"]["param_groups"][0]["params"][1] = 0


FAULTS = {  # id: (change, what the message must name)
    "lrn_size 10**9": (model_args(norm="lrn", lrn_size=10**9), r"model_args.*'lrn_size' must be an integer in \[1, 4096\]"),
    "lrn_size > channels": (model_args(norm="lrn", lrn_size=64), r"lrn_size=64 is larger than the 3 channels"),
    "image_size 10**7": (image_size(10**7), r"model_args.*'image_size' must be an integer in \[1, 4096\]"),
    "width_mult 1e6": (model_args(width_mult=1e6), r"model_args.*'width_mult' must be a finite number in \(0, 64\]"),
    "width_mult 32: parameters": (model_args(width_mult=32.0), r"model_args.*parameters \(limit 2,147,483,648\)"),
    "image_size 4096: activation": (both(image_size(4096), model_args(head="adaptive", width_mult=16.0, fc_width=64)),
                                    r"largest feature map"),
    "num_classes 10**9": (model_args(num_classes=10**9), r"model_args.*'num_classes' must be an integer in \[1, 100000\]"),
    "num_classes vs class_names": (model_args(num_classes=3), r"'class_names' holds 2 names but model_args\.num_cl"),
    "model_args not a mapping": (setter("model_args", value=[1, 2]), r"field 'model_args' must be a mapping"),
    "model_args unknown field": (model_args(depth=8), r"model_args.*unknown model config field\(s\) depth"),
    "model_args wrong type": (model_args(groups="2"), r"model_args.*'groups' must be an integer in \[1, 65536\], got '2'"),
    "class_names 100,001": (setter("class_names", value=[f"c{i}" for i in range(100_001)]),
                            r"'class_names' must be a list of 1 to 100000 items, got 100001 items"),
    "class_names not strings": (setter("class_names", value=[1, 2]), r"'class_names\[0\]' must be a non-empty str"),
    "class_names a string": (setter("class_names", value="catdog"), r"'class_names' must be a list"),
    "class_names repeated": (setter("class_names", value=["cat", "cat"]), r"'class_names' must be distinct names"),
    "class name of 10**5 chars": (setter("class_names", value=["c" * 10**5, "dog"]), r"'class_names\[0\]' must be"),
    "mean NaN": (setter("mean", value=[math.nan, 0.5, 0.5]), r"field 'mean\[0\]' must be a finite number"),
    "mean wrong length": (setter("mean", value=[0.5, 0.5]), r"field 'mean' must be a list of 3 to 3 items"),
    "std zero": (setter("std", value=[0.2, 0.0, 0.2]), r"field 'std\[1\]' must be a finite number in \(0"),
    "std inf": (setter("std", value=[0.2, math.inf, 0.2]), r"field 'std\[1\]'"),
    "image_size a string": (setter("image_size", value="67"), r"field 'image_size' must be an integer"),
    "image_size disagrees": (setter("image_size", value=99), r"'image_size' is 99 but model_args\.image_size is 67"),
    "in_channels disagrees": (setter("in_channels", value=1), r"'in_channels' is 1 but model_args\.in_channels is 3"),
    "preset unknown": (setter("preset", value="imagenet"), r"field 'preset' must be one of seed, d2l, paper"),
    "weight of the wrong shape": (wrong_shape, r"'model\.classifier\.1\.weight' is a torch\.float32 tensor of shape "
                                               r"\(128, 33\); model_args give torch\.float32 \(128, 8\)"),
    "weight missing": (deleter("model", "classifier.6.bias"), r"weights do not fit.*missing \['classifier\.6\.bias'\]"),
    "weight unexpected": (setter("model", "extra.weight", value=torch.zeros(1)), r"unexpected \['extra\.weight'\]"),
    "weight not a tensor": (setter("model", "classifier.6.bias", value=[0.0, 0.0]), r"'model\.classifier\.6\.bias' must be a tensor"),
    "epoch negative": (state("epoch", value=-1), r"field 'train_state\.epoch' must be an integer in \[0, 1000000\], got -1"),
    "epoch a float": (state("epoch", value=1.0), r"field 'train_state\.epoch' must be an integer"),
    "global_step huge": (state("global_step", value=10**30), r"field 'train_state\.global_step' must be an integer"),
    "best_val_top1 NaN": (state("best_val_top1", value=math.nan), r"'train_state\.best_val_top1' must be a finite num"),
    "scheduler field wrong": (state("scheduler", "drops", value="x"), r"field 'train_state\.scheduler\.drops'"),
    "scheduler field unknown": (state("scheduler", "extra", value=1), r"unknown field 'train_state\.scheduler\.extra'"),
    "epoch_totals empty": (state("epoch_totals", value=[]), r"'train_state\.epoch_totals' must be a list of 1 to 65536"),
    "epoch_totals correct > count": (state("epoch_totals", 0, "correct", value=5), r"'train_state\.epoch_totals\[0\]\.co"),
    "epoch_totals unknown key": (state("epoch_totals", 0, "bogus", value=1), r"unknown field 'train_state\.epoch_tota"),
    "world_size disagrees": (state("world_size", value=2), r"'train_state\.world_size' is 2 but train_state\.epoch_totals "
                                                           r"holds 1 ranks"),
    "train state unknown field": (state("sampler", value={}), r"unknown field 'train_state\.sampler'"),
    "optimizer state shape": (momentum_of_wrong_shape, r"'train_state\.optimizer\.state\[0\]\.exp_avg' has shape \(7,\), "
                                                       r"its parameter \(3, 3, 11, 11\)"),
    "optimizer parameter twice": (parameter_listed_twice, r"'train_state\.optimizer\.param_groups' covers 26 parameter"),
    "optimizer lr NaN": (state("optimizer", "param_groups", 0, "lr", value=math.nan), r"param_groups\[0\]\.lr'"),
    "optimizer not a mapping": (state("optimizer", value=None), r"field 'train_state\.optimizer' must be a mapping"),
    "rng torch state short": (state("rng", "torch", value=torch.zeros(8, dtype=torch.uint8)), r"'train_state\.rng\.torch' mu"),
    "rng python state": (state("rng", "python", value=(3, (1, 2), None)), r"'train_state\.rng\.python\[1\]' must be a li"),
    "rng torch state invalid": (state("rng", "torch", value=torch.full((5056,), 7, dtype=torch.uint8)),
                                r"'train_state\.rng\.torch' is not a valid generator state \(Invalid mt19937 state\)"),
    "rng numpy key": (state("rng", "numpy", "key", value=torch.zeros(3)), r"'train_state\.rng\.numpy\.key' must be an int"),
    "train_state not a mapping": (setter("train_state", value=[1]), r"field 'train_state' must be a mapping"),
    "optimizer_params unknown": (state("optimizer_params", value=["nope"]), r"'train_state\.optimizer_params\[0\]' "
                                                                           r"must be the name of one of the model's"),
    "optimizer_params repeated": (state("optimizer_params", value=["features.0.weight"] * 2), r"must be distinct"),
    "optimizer_params vs ids": (state("optimizer_params", value=["features.0.weight"]), r"param_groups\[0\]\.params' must "
                                                                                       r"be a list of 0 to 1 items"),
    "frozen not a flag": (state("frozen", value="yes"), r"field 'train_state\.frozen' must be"),
    "synthetic billion images": (setter("data", "shapes", value={"image_size": 64, "train_per_class": 10**9}),
                                 r"'data\.shapes\.train_per_class' must be an integer in \[1, 100000\]"),
    "synthetic unknown field": (setter("data", "shapes", value={"colours": 3}), r"unknown field 'data\.shapes\.colours'"),
    "data seed a string": (setter("data", "seed", value="0"), r"field 'data\.seed' must be an integer"),
    "data pca wrong": (setter("data", "pca", value={"eigval": [1.0], "eigvec": [[1.0]]}), r"'data\.pca\.eigval'"),
    "config lr inf": (setter("config", "optim", "lr", value=math.inf), r"field 'config'.*optim\.lr.*finite"),
    "config epochs huge": (setter("config", "run", "epochs", value=10**12), r"field 'config'.*run\.epochs"),
    "config not a mapping": (setter("config", value="x"), r"field 'config'.*expected a mapping"),
    "format_version a string": (setter("format_version", value="1"), r"field 'format_version' must be an integer"),
}


@pytest.mark.parametrize(("change", "message"), FAULTS.values(), ids=FAULTS.keys())
def test_crafted_field_is_refused_by_name(original, tmp_path, change, message):
    path = craft(original, tmp_path, change)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "\n" not in text and len(text) < MESSAGE_LIMIT, text


# Format 1 (the committed file as written): the copies it held inside data must agree, and its top-level train state
# is validated as today's train_state.
FORMAT_1_FAULTS = {
    "data classes disagree": (setter("data", "class_names", value=["dog", "cat"]), r"'data\.class_names' must be the "),
    "data image_size disagrees": (setter("data", "image_size", value=227), r"'data\.image_size' is 227 but image_size"),
    "epoch negative": (setter("epoch", value=-1), r"field 'train_state\.epoch' must be an integer in \[0, 1000000\]"),
    "epoch missing": (deleter("epoch"), r"checkpoint lacks field 'epoch'$"),
}


@pytest.mark.parametrize(("change", "message"), FORMAT_1_FAULTS.values(), ids=FORMAT_1_FAULTS.keys())
def test_crafted_format_1_field_is_refused_by_name(format_1, tmp_path, change, message):
    path = craft(format_1, tmp_path, change)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_missing_field_is_named_not_a_key_error(original, tmp_path, field):
    path = craft(original, tmp_path, deleter(field))
    with pytest.raises(CheckpointError, match=rf"{path.name}: checkpoint lacks field '{field}'$"):
        load_checkpoint(path)


@pytest.mark.parametrize(("keys", "field"), [
    (("data", "source"), "data.source"),
    (("train_state", "rng", "numpy"), "train_state.rng.numpy"),
    (("train_state", "scheduler", "best"), "train_state.scheduler.best"),
    (("train_state", "optimizer", "param_groups"), "train_state.optimizer.param_groups"),
    (("train_state", "epoch_totals", 0, "count"), "train_state.epoch_totals[0].count"),
])
def test_missing_nested_field_is_named(original, tmp_path, keys, field):
    path = craft(original, tmp_path, deleter(*keys))
    with pytest.raises(CheckpointError, match=rf"checkpoint lacks field '{re.escape(field)}'$"):
        load_checkpoint(path)


FAULTS_THROUGH_THE_CLI = ["lrn_size 10**9", "image_size 10**7", "width_mult 1e6", "mean NaN",
                          "weight of the wrong shape", "num_classes vs class_names", "synthetic billion images"]


@pytest.fixture(scope="module")
def million_names(original, tmp_path_factory):
    """A checkpoint naming 10**6 classes (~10 MB of pickle: the unpickler alone would take ~15 s here)."""
    ckpt = copy.copy(original)
    ckpt["class_names"] = [f"class{i}" for i in range(10**6)]
    path = tmp_path_factory.mktemp("million") / "million.pt"
    torch.save(ckpt, path)
    return path


def test_million_class_names_are_refused_unread(million_names):
    with pytest.raises(CheckpointError, match=r"million\.pt: its pickled fields take 1\d\.\d MiB \(limit 4 MiB"):
        load_checkpoint(million_names)


def test_compressed_archive_is_refused_unread(tmp_path):
    """A zip bomb: torch.load inflates deflated entries (torch.save never writes them), so 10 GB of zeros would
    fit in a 10 MB file. Here a real deflated copy of the fixture stands for it."""
    import zipfile

    bomb = tmp_path / "deflated.pt"
    with zipfile.ZipFile(FIXTURE) as src, zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info.filename))
    with pytest.raises(CheckpointError, match=r"deflated\.pt: archive entry '.*data\.pkl' is compressed"):
        load_checkpoint(bomb)


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_million_class_names_through_the_cli(million_names, capsys, image, command):
    argv = [command, "--checkpoint", str(million_names)] + ([str(image)] if command == "predict" else [])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"alexnet {command}: error: {million_names}: its pickled fields take") and err.count("\n") == 1


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "x.png"
    Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("fault", FAULTS_THROUGH_THE_CLI)
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_cli_answers_one_line_and_status_2(original, tmp_path, capsys, image, fault, command):
    change, message = FAULTS[fault]
    path = craft(original, tmp_path, change)
    argv = [command, "--checkpoint", str(path), "--device", "cpu"] + ([str(image)] if command == "predict" else [])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"alexnet {command}: error: {path}: ") and len(err) < MESSAGE_LIMIT, err


def test_missing_field_through_the_cli(original, tmp_path, capsys, image):
    path = craft(original, tmp_path, deleter("train_state", "rng"))  # only resume reads it, yet it is named up front
    assert cli.main(["predict", "--checkpoint", str(path), str(image)]) == 2
    assert capsys.readouterr().err == f"alexnet predict: error: {path}: checkpoint lacks field 'train_state.rng'\n"


def test_todays_checkpoint_still_loads_and_predicts(capsys, image):
    ckpt = load_checkpoint(FIXTURE)
    assert ckpt.class_names == ["cat", "dog"] and ckpt.model_args["width_mult"] == 0.03125
    assert cli.main(["predict", "--checkpoint", str(FIXTURE), str(image), "--json", "--device", "cpu"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    expected = predict_files(ckpt, [str(image)])[0].top
    assert [t["label"] for t in top] == [label for label, _ in expected]
    assert [t["prob"] for t in top] == pytest.approx([p for _, p in expected], abs=1e-4)


@pytest.mark.parametrize("version", ["2.5.1", "2.4.0+cu121", "1.13.1", "not a version", ""])
def test_old_torch_is_refused_before_unpickling(version):
    with pytest.raises(CheckpointError, match=r"cannot read checkpoints safely.*torch >= 2\.6"):
        check_torch_version(version)


@pytest.mark.parametrize("version", ["2.6.0", "2.14.1+cu130", "3.0.0a0+git1234"])
def test_supported_torch_is_accepted(version):
    check_torch_version(version)  # raises on refusal


def test_short_truncates_without_rendering_the_whole_value():
    assert short("x" * 10**7).startswith("'xxx") and len(short("x" * 10**7)) <= 80
    assert len(short(list(range(10**6)))) <= 80
    assert short(10**100_000) == "<an int of 332193 bits>"  # repr would raise past 4300 digits
    assert short([1, 2]) == "[1, 2]" and short(None) == "None"
    assert len(short({"a": {"b": {"c": {"d": "e" * 1000}}}}, limit=40)) <= 40


# --- fuzzing the validator: random values in every field -> CheckpointError or accepted, nothing else ---------------

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    | st.tuples(inner, inner),
    max_leaves=12,
)
MODEL_ARG_FIELDS = ["in_channels", "num_classes", "image_size", "width_mult", "channels", "fc_width", "groups",
                    "lrn_size", "norm", "head", "conv1_padding", "dropout", "lrn_alpha", "pooling"]


def paths_of(ckpt):
    """(keys...) of every field and sub-field worth replacing (not the weights' or RNG words' bulk)."""
    out = [(k,) for k in ckpt]
    out += [("model_args", k) for k in MODEL_ARG_FIELDS]
    state = ckpt["train_state"]
    out += [("data", k) for k in ckpt["data"]] + [("train_state", k) for k in state]
    out += [("train_state", "scheduler", k) for k in state["scheduler"]]
    out += [("train_state", "epoch_totals", 0, k) for k in state["epoch_totals"][0]]
    out += [("train_state", "rng", k) for k in state["rng"]]
    out += [("train_state", "optimizer", "param_groups", 0, k) for k in state["optimizer"]["param_groups"][0]]
    out += [("config", s, k) for s in ("model", "data", "optim", "run") for k in ckpt["config"][s]]
    return out


@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # hypothesis shows the fixture checkpoint
@settings(max_examples=int(os.environ.get("ALEXNET_FUZZ_EXAMPLES", 120)), deadline=None, database=None,
          derandomize="ALEXNET_FUZZ_EXAMPLES" not in os.environ, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_fields_are_refused_or_accepted(original, data):
    ckpt = copy.copy(original)  # shallow: only the touched branch is copied below
    for _ in range(data.draw(st.integers(1, 3))):
        keys = data.draw(st.sampled_from(paths_of(original)))
        node, orig_node = ckpt, original
        for key in keys[:-1]:
            orig_node = orig_node[key]
            if type(node[key]) is not type(orig_node):  # an earlier draw replaced this branch: start it afresh
                node[key] = orig_node
            if node[key] is orig_node:
                node[key] = copy.copy(orig_node)  # copy only the branch that is changed
            node = node[key]
        node[keys[-1]] = data.draw(values)
    try:
        validate_checkpoint(ckpt, "fuzzed.pt", check_finite=False)
    except CheckpointError as e:
        assert "\n" not in str(e) and len(str(e)) < MESSAGE_LIMIT
