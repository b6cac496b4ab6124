"""`alexnet train` computes what the second note's d2l loop computes: same init, same batches, same numbers.

The note's loop (Resize + ToTensor on PIL images, Adam, mean cross-entropy) is written out here as the note writes
it, fed the batches of our epoch order; ours is `fit()` itself, through the uint8 cache and whole-batch augmentation.
A drift in the data path (resize, scaling, normalisation, channel handling) or in the trainer (loss scaling, the
optimizer, the order of batches) changes these numbers and fails the test. Dropout is off so that no random mask
has to be shared between the two.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alexnet.config import resolve_config
from alexnet.data.idx import find_idx_files, read_idx_pair
from alexnet.models import build_model
from alexnet.store.checkpoint import load_checkpoint
from alexnet.train import fit
from alexnet.training.determinism import epoch_permutation
from data_factories import write_mnist_folder

SEED, SIZE, BATCH, STEPS = 3, 67, 8, 3


def note_batches(folder, order):
    """The note's `load_data_fashion_mnist(batch_size, resize=67)`: PIL image -> Resize -> ToTensor, in `order`."""
    import torchvision
    from PIL import Image

    transform = torchvision.transforms.Compose([torchvision.transforms.Resize(size=SIZE),
                                                torchvision.transforms.ToTensor()])
    pair = read_idx_pair(*find_idx_files(str(folder))["train"])
    for step in range(STEPS):
        idx = order[step * BATCH:(step + 1) * BATCH].tolist()
        x = torch.stack([transform(Image.fromarray(pair.images[i], mode="L")) for i in idx])
        yield x, torch.as_tensor(pair.labels[idx])


def note_steps(model, batches) -> list[float]:
    """The notes' training step, as both write it: Adam one op at a time (the notes' optimizer), mean cross-entropy,
    zero_grad, backward, step; the loss of each step."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_the_first_steps_of_train_match_the_d2l_notes_loop(tmp_path):
    folder = write_mnist_folder(tmp_path / "digits", n_train=BATCH * STEPS, n_test=8)
    # No preset named: IDX digits get the d2l note's preprocessing by default, which is what makes the two identical.
    overrides = {"data.source": str(folder), "data.image_size": SIZE,
                 "model.name": "alexnet-d2l", "model.width_mult": 0.125, "model.dropout": 0.0,
                 "optim.opt": "adam", "optim.lr": 1e-3, "optim.lr_schedule": "none",
                 "run.batch_size": BATCH, "run.epochs": 1, "run.seed": SEED, "run.device": "cpu",
                 "run.output_dir": str(tmp_path / "run")}
    # The same init: fit() seeds the global generator with run.seed right before it builds the model.
    torch.manual_seed(SEED)
    note_model = build_model("alexnet-d2l", num_classes=10, image_size=SIZE, width_mult=0.125, dropout=0.0)
    start = copy.deepcopy(note_model.state_dict())
    result = fit(resolve_config(overrides=overrides), progress=False)
    ours = load_checkpoint(tmp_path / "run", prefer="last")
    assert ours.train_state["global_step"] == STEPS and ours.preprocessing.preset == "d2l"

    note_model.load_state_dict(start)
    losses = note_steps(note_model, note_batches(folder, epoch_permutation(BATCH * STEPS, SEED, 0)))

    # The epoch's training loss is the mean of the same per-step losses; the weights after the steps agree.
    assert result.rows[0]["train_loss"] == pytest.approx(float(np.mean(losses)), rel=1e-5)
    for name, tensor in note_model.state_dict().items():
        # atol: Adam's fused kernel (ours) rounds differently from the per-tensor one (the note's); where a gradient
        # is near zero, m / sqrt(v) may then move a few elements by a small fraction of one step (lr = 1e-3).
        torch.testing.assert_close(ours.weights[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    # And the run did learn something: the weights moved from their init.
    assert any(not torch.equal(ours.weights[k], v) for k, v in start.items() if v.is_floating_point())


def test_the_default_preset_follows_the_note_the_data_comes_from(tmp_path):
    from alexnet.data import build_datasets
    from data_factories import image_folder

    digits = write_mnist_folder(tmp_path / "digits", n_train=10, n_test=4)
    photos = image_folder(tmp_path / "photos", per_class=5)
    assert build_datasets(str(digits), image_size=SIZE, in_channels=1, preset=None).preset == "d2l"
    assert build_datasets(str(photos), image_size=SIZE, preset=None, val_split=0.4).preset == "seed"
    # A preset the user names wins, whatever the data.
    assert build_datasets(str(digits), image_size=SIZE, in_channels=1, preset="seed").preset == "seed"
    assert resolve_config(overrides={"data.source": str(digits)}).data.preset is None


def test_the_first_steps_of_train_match_the_cats_vs_dogs_notes_loop(tmp_path):
    """The same for the first note's TrainingNet.py on a photo folder: ImageFolder + Resize((S, S)) + ToTensor +
    Normalize(ImageNet) against the uint8 cache + BatchAugment, BatchNorm AlexNet, Adam."""
    import torchvision
    from torchvision import transforms

    from alexnet.data import build_datasets
    from data_factories import image_folder

    image_folder(tmp_path / "pets" / "train", per_class=6, size=(50, 40))
    image_folder(tmp_path / "pets" / "val", per_class=2, size=(50, 40))
    overrides = {"data.source": str(tmp_path / "pets"), "data.image_size": SIZE, "model.name": "alexnet-bn",
                 "model.width_mult": 0.125, "model.dropout": 0.0, "optim.opt": "adam", "optim.lr": 1e-3,
                 "optim.lr_schedule": "none", "run.batch_size": 4, "run.epochs": 1, "run.seed": SEED,
                 "run.device": "cpu", "run.output_dir": str(tmp_path / "run")}
    torch.manual_seed(SEED)
    note_model = build_model("alexnet-bn", num_classes=2, image_size=SIZE, width_mult=0.125, dropout=0.0)
    start = copy.deepcopy(note_model.state_dict())
    result = fit(resolve_config(overrides=overrides), progress=False)
    ours = load_checkpoint(tmp_path / "run", prefer="last")
    assert ours.preprocessing.preset == "seed" and ours.train_state["global_step"] == 3

    transform = transforms.Compose([transforms.Resize(size=(SIZE, SIZE)), transforms.ToTensor(),
                                    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    note_data = torchvision.datasets.ImageFolder(root=str(tmp_path / "pets" / "train"), transform=transform)
    # Our epoch order indexes our own list of files: map it onto ImageFolder's by path.
    ours_files = [path for path, _ in build_datasets(str(tmp_path / "pets"), image_size=SIZE).train.samples]
    where = {path: i for i, (path, _) in enumerate(note_data.samples)}
    order = [where[ours_files[i]] for i in epoch_permutation(len(ours_files), SEED, 0).tolist()]
    batches = ([note_data[i] for i in order[step * 4:(step + 1) * 4]] for step in range(3))
    note_model.load_state_dict(start)
    losses = note_steps(note_model, ((torch.stack([x for x, _ in b]), torch.tensor([y for _, y in b])) for b in batches))
    # rel 1e-4, not 1e-5 as above: the normalisation is one fused scale-and-shift on the batch here and a subtract
    # then divide in torchvision's Normalize, and BatchNorm over a batch of 4 carries that last-bit difference on.
    assert result.rows[0]["train_loss"] == pytest.approx(float(np.mean(losses)), rel=1e-4)
    # No weight comparison here: a conv bias in front of BatchNorm gets a gradient that is rounding noise (BatchNorm
    # subtracts it out again), and Adam turns noise into full-size steps of +-lr, so those biases differ by design.
    # The loss sees through it: it is the same function of the same inputs at every step.
