"""Checkpoint files: atomic writes, weights_only reads, and errors that name the file and the cause."""

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.errors import CheckpointError
from alexnet.store.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    Checkpoint,
    atomic_save,
    find_checkpoint,
    load_checkpoint,
)
from alexnet.store.runfolder import RunPaths
from alexnet.training.determinism import rng_state, set_rng_state

FIXTURE = Path(__file__).parent / "fixtures" / "tiny-v1.pt"  # written by a real run: fixtures/make_checkpoint.py


def minimal_checkpoint(**extra):
    """A real checkpoint in today's layout (the committed fixture, alexnet-bn at width 1/32 on classes cat and dog,
    read and written back by the record), with the top-level fields in `extra` set."""
    ckpt = load_checkpoint(FIXTURE).to_dict()
    ckpt.update(extra)
    return ckpt


def record_at(path="x/last.pt"):
    record = load_checkpoint(FIXTURE)
    record.path = path
    return record


class NotPlain:
    """A class a weights_only unpickler must refuse to construct."""

    def __init__(self):
        self.payload = 1


def test_round_trip_and_run_folder_lookup(tmp_path):
    paths = RunPaths(tmp_path / "run")
    ckpt = minimal_checkpoint()
    atomic_save(ckpt, paths.last)
    loaded = load_checkpoint(paths.root, prefer="last")
    assert loaded.class_names == ["cat", "dog"]
    assert torch.equal(loaded.weights["features.0.weight"], ckpt["model"]["features.0.weight"])
    assert loaded.to_dict().keys() == ckpt.keys() and loaded.to_dict()["format_version"] == FORMAT_VERSION
    assert find_checkpoint(paths.root, prefer="best") == paths.last  # no best.pt yet: falls back to last.pt
    atomic_save(ckpt, paths.best)
    assert find_checkpoint(paths.root, prefer="best") == paths.best
    assert sorted(p.name for p in paths.checkpoints.iterdir()) == ["best.pt", "last.pt"]  # no temporaries left


def test_failed_save_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save(minimal_checkpoint(), path)
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.save raises for an unpicklable object
        atomic_save(minimal_checkpoint(image_size=lambda: 0), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_zero_byte_file_is_named(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"last\.pt: empty file \(0 bytes\)"):
        load_checkpoint(path)


def test_truncated_file_is_named(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save(minimal_checkpoint(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt: not a PyTorch checkpoint, or truncated"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"\xff\xd8\xff\xe0 a jpeg, not a checkpoint", b"epoch,lr\n1,0.1\n"])
def test_foreign_file_is_named(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"model\.pt: not a PyTorch checkpoint"):
        load_checkpoint(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the raw pickle below is protocol 4 on purpose
def test_pickled_objects_are_refused_never_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "thing": NotPlain()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: holds Python objects other than tensors"):
        load_checkpoint(path)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(NotPlain()))
    with pytest.raises(CheckpointError, match=r"raw\.pt"):
        load_checkpoint(raw)


def test_bare_state_dict_from_the_notes_is_explained(tmp_path):
    path = tmp_path / "AlexNet.pth"
    torch.save(torch.nn.Linear(4, 2).state_dict(), path)  # what the note's TrainingNet.py saves
    with pytest.raises(CheckpointError, match=r"AlexNet\.pth: a bare state_dict"):
        load_checkpoint(path)


def test_other_torch_dict_is_not_an_alexnet_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"epoch": 3, "weights": [1, 2]}, path)
    with pytest.raises(CheckpointError, match=r"other\.pt: not an alexnet checkpoint"):
        load_checkpoint(path)


def test_newer_format_and_missing_fields_are_refused(tmp_path):
    path = tmp_path / "new.pt"
    atomic_save(minimal_checkpoint(format_version=FORMAT_VERSION + 1), path)
    with pytest.raises(CheckpointError, match="newer alexnet"):
        load_checkpoint(path)
    ckpt = minimal_checkpoint()
    del ckpt["class_names"]
    atomic_save(ckpt, path)
    with pytest.raises(CheckpointError, match="lacks field 'class_names'"):
        load_checkpoint(path)


def test_non_finite_weights_are_refused(tmp_path):
    ckpt = minimal_checkpoint()
    ckpt["model"]["classifier.6.bias"][0] = float("nan")
    path = tmp_path / "nan.pt"
    atomic_save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"nan\.pt: weight 'classifier\.6\.bias' holds NaN"):
        load_checkpoint(path)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no checkpoints/best.pt"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("field", "value"),
    [("class_names", ["circle", "square"]), ("image_size", 227), ("model_name", "alexnet"), ("in_channels", 1)],
)
def test_mismatch_names_the_field(field, value):
    record = record_at()
    expected = {"class_names": ["cat", "dog"], "image_size": 67, "model_name": "alexnet-bn", "in_channels": 3}
    record.check_matches(expected, "resume")  # identical: accepted
    expected[field] = value
    with pytest.raises(CheckpointError, match=rf"cannot resume: {field} differs: checkpoint x/last\.pt has"):
        record.check_matches(expected, "resume")


def test_model_args_mismatch_names_the_argument():
    record = record_at()
    with pytest.raises(CheckpointError, match=r"model_args\.width_mult differs"):
        record.check_matches({"model_args": dict(record.model_args, width_mult=0.25)}, "evaluate")


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = tmp_path / "rng.pt"
    state = rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt = minimal_checkpoint()
    ckpt["train_state"]["rng"] = state
    atomic_save(ckpt, path)
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(load_checkpoint(path).train_state["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_mismatch_message_echoes_a_bounded_value():
    record = record_at()
    many = [f"class{i}" for i in range(100_000)]
    with pytest.raises(CheckpointError, match=r"class_names differs: checkpoint x/last\.pt has \['cat', 'dog'\], "
                                              r"this run has \['class0', .*\.\.\.") as err:
        record.check_matches({"class_names": many}, "evaluate")
    assert len(str(err.value)) < 300
    with pytest.raises(CheckpointError, match=r"model_args\.name differs: .* this run has 'yyy") as err:
        record.check_matches({"model_args": dict(record.model_args, name="y" * 10**6)}, "resume")
    assert len(str(err.value)) < 300


def test_random_bytes_are_named_without_torchs_advice_to_unpickle_unsafely(tmp_path):
    path = tmp_path / "download.pt"
    path.write_bytes(bytes(range(256)) * 12)  # a pickle stream of nonsense opcodes, not a zip archive
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "download.pt: not a PyTorch checkpoint" in message and "weights_only" not in message


def test_format_1_reads_as_the_same_record_as_its_format_2_rewrite(tmp_path):
    """The upgrade moves fields, nothing else: format 1 (the fixture) and the record's own rewrite of it read the
    same, and the rewrite drops format 1's duplicated data fields and its unread `sampler`."""
    old = torch.load(FIXTURE, map_location="cpu", weights_only=True)
    assert old["format_version"] == 1 and "sampler" in old and "image_size" in old["data"]
    first = load_checkpoint(FIXTURE)
    path = tmp_path / "v2.pt"
    atomic_save(first.to_dict(), path)
    second = load_checkpoint(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION == 2
    assert "sampler" not in raw and "epoch" not in raw and "image_size" not in raw["data"]
    for name in ("model_name", "model_args", "class_names", "preprocessing", "data", "config", "versions"):
        assert getattr(first, name) == getattr(second, name), name
    assert first.data_description() == second.data_description()
    assert first.data_description()["image_size"] == old["data"]["image_size"]
    assert first.train_state.keys() == second.train_state.keys()
    assert {k: first.train_state[k] for k in ("epoch", "step_in_epoch", "global_step", "best_val_top1")} == {
        k: old[k] for k in ("epoch", "step_in_epoch", "global_step", "best_val_top1")}


def test_a_format_1_copy_that_disagrees_is_refused(tmp_path):
    old = torch.load(FIXTURE, map_location="cpu", weights_only=True)
    old["data"]["preset"] = "d2l"
    path = tmp_path / "edited.pt"
    atomic_save(old, path)
    with pytest.raises(CheckpointError, match=r"field 'data\.preset' is 'd2l' but preset is 'seed'"):
        load_checkpoint(path)


def test_the_record_is_the_only_reader_of_keys():
    """The record's own fields, typed: callers never index the file's dict."""
    record = load_checkpoint(FIXTURE)
    assert isinstance(record, Checkpoint)
    assert record.preprocessing.image_size == 67 and record.preprocessing.mean == (0.485, 0.456, 0.406)
    model = record.build_model()
    assert not model.training and model.config.num_classes == len(record.class_names)
