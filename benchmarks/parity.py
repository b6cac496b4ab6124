"""Same recipe, same accuracy? The notes' own loops, as written, beside `alexnet train` with the recipe held equal.

    python benchmarks/parity.py --note d2l --data DIR_WITH_IDX [--seeds 5] [--epochs 3] [--image-size 67]
    python benchmarks/parity.py --note d2l --data sklearn-digits   # real digits that scikit-learn ships
    python benchmarks/parity.py --note seed --data PHOTOS_WITH_train_AND_val [--width-mult 0.25] [--image-size 96]
    python benchmarks/parity.py --note seed                     # the built-in shapes dataset

Note `d2l` (the second note, section 5.6 of d2lzh_pytorch): its AlexNet class (1 channel, no padding in conv1,
dropout after fc6/fc7's ReLU, PyTorch's default init), Resize + ToTensor on PIL images of IDX digits or clothes,
Adam, cross-entropy, `train_ch5`'s loop, test accuracy after each epoch. Note `seed` (the first note,
TrainingNet.py): the BatchNorm AlexNet (our alexnet-bn, which is that class), ImageFolder with Resize((S, S)) +
ToTensor + Normalize(ImageNet), DataLoader(shuffle=True), Adam, then TestNet.py's accuracy on val/. Ours:
`alexnet train` in its own process, as a user types it, with the same model, size, optimizer, learning rate,
batch, epochs and no schedule, and `--preset` as the factor under study (`--ours-preset`, one or more: each is
compared with the same note runs).

Each seed runs both paths; the report gives each path's final test accuracy (mean +- std over seeds) and the
difference ours - note with a 95% interval (Welch's t). `--train-limit` / `--test-limit` take the first N items
of an IDX set (written to a temporary IDX folder that both paths read). Results: benchmarks/README.md, "Parity".
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Two-sided 95% quantiles of Student's t by degrees of freedom (a fractional df uses the next lower entry: wider).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000}


class D2LAlexNet(nn.Module):
    """The second note's class, as written, but for the flatten size, which it hard-codes for 224 px (256*5*5)."""

    def __init__(self, image_size: int = 224):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 96, 11, 4), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(384, 384, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2),
        )
        with torch.no_grad():
            flat = self.conv(torch.zeros(1, 1, image_size, image_size)).numel()
        self.fc = nn.Sequential(
            nn.Linear(flat, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(4096, 10),
        )

    def forward(self, img):
        feature = self.conv(img)
        return self.fc(feature.view(img.shape[0], -1))


# --- data ---------------------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (magic 0x0000 08 ndim, big-endian dims), gzip when the name ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    body = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(body) if path.name.endswith(".gz") else body)


def limited_idx_folder(source: Path, out: Path, train_limit: int | None, test_limit: int | None) -> Path:
    """The first N train / test items of the IDX files in `source`, written as a new IDX folder both paths read."""
    from alexnet.data.idx import find_idx_files, read_idx_pair

    pairs = find_idx_files(str(source))
    if set(pairs) != {"train", "test"}:
        raise SystemExit(f"{source}: expected train and test IDX files (train-images-idx3-ubyte ...)")
    out.mkdir(parents=True, exist_ok=True)
    for split, limit in (("train", train_limit), ("test", test_limit)):
        pair = read_idx_pair(*pairs[split])
        prefix = "train" if split == "train" else "t10k"
        write_idx(out / f"{prefix}-images-idx3-ubyte", pair.images[:limit])
        write_idx(out / f"{prefix}-labels-idx1-ubyte", pair.labels[:limit].astype(np.uint8))
    return out


def sklearn_digits_idx(out: Path, test_share: float = 0.2) -> Path:
    """scikit-learn's copy of the UCI handwritten digits (1,797 scans, 8x8, 17 grey levels), as IDX files of
    28x28 (bicubic, stretched to 0..255, as MNIST's size): real digits on a machine with no download. The last
    `test_share` of each class is the test set."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack([np.asarray(Image.fromarray((im * 255 / 16).astype(np.uint8)).resize((28, 28), Image.BICUBIC))
                       for im in digits.images])
    labels = digits.target.astype(np.uint8)
    test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        members = np.flatnonzero(labels == c)
        test[members[int(len(members) * (1 - test_share)):]] = True
    out.mkdir(parents=True, exist_ok=True)
    for prefix, mask in (("train", ~test), ("t10k", test)):
        write_idx(out / f"{prefix}-images-idx3-ubyte", images[mask])
        write_idx(out / f"{prefix}-labels-idx1-ubyte", labels[mask])
    return out


class IdxImages(torch.utils.data.Dataset):
    """PIL images from IDX arrays, as torchvision's FashionMNIST hands them to the note's transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


# --- the notes' loops, as written -----------------------------------------------------------------------------------


def d2l_note(data: Path, seed: int, epochs: int, image_size: int, batch_size: int, lr: float) -> dict:
    """load_data_fashion_mnist(batch_size, resize) + d2l.train_ch5, on the IDX files in `data`."""
    import torchvision

    from alexnet.data.idx import find_idx_files, read_idx_pair

    pairs = find_idx_files(str(data))
    transform = torchvision.transforms.Compose([torchvision.transforms.Resize(size=image_size),
                                                torchvision.transforms.ToTensor()])
    train, test = (IdxImages(p.images, p.labels, transform) for p in (read_idx_pair(*pairs[s]) for s in ("train", "test")))
    torch.manual_seed(seed)
    net = D2LAlexNet(image_size)
    train_iter = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True)
    test_iter = torch.utils.data.DataLoader(test, batch_size=batch_size, shuffle=False)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    return _train_ch5(net, train_iter, test_iter, optimizer, epochs)


def _train_ch5(net, train_iter, test_iter, optimizer, epochs: int) -> dict:
    loss = torch.nn.CrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        net.train()
        train_l_sum, train_acc_sum, n, start = 0.0, 0.0, 0, time.time()
        for X, y in train_iter:
            y_hat = net(X)
            batch_loss = loss(y_hat, y)
            optimizer.zero_grad()
            batch_loss.backward()
            optimizer.step()
            train_l_sum += batch_loss.item()
            train_acc_sum += (y_hat.argmax(dim=1) == y).sum().item()
            n += y.shape[0]
        history.append({"epoch": epoch + 1, "test_acc": _accuracy(net, test_iter), "train_acc": train_acc_sum / n,
                        "seconds": time.time() - start})
    return {"test_acc": history[-1]["test_acc"], "history": history}


def _accuracy(net, data_iter) -> float:
    net.eval()
    correct, n = 0, 0
    with torch.no_grad():
        for X, y in data_iter:
            correct += (net(X).argmax(dim=1) == y).sum().item()
            n += y.shape[0]
    net.train()
    return correct / n


def seed_note(data: Path, seed: int, epochs: int, image_size: int, batch_size: int, lr: float,
              width_mult: float) -> dict:
    """TrainingNet.py + TestNet.py: ImageFolder(train/) with Resize/ToTensor/Normalize, Adam, then val/ accuracy."""
    import torchvision
    from torchvision import transforms

    from alexnet.models import build_model

    transform = transforms.Compose([
        transforms.Resize(size=(image_size, image_size)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    train = torchvision.datasets.ImageFolder(root=str(data / "train"), transform=transform)
    val = torchvision.datasets.ImageFolder(root=str(data / "val"), transform=transform)
    torch.manual_seed(seed)
    net = build_model("alexnet-bn", num_classes=len(train.classes), image_size=image_size, width_mult=width_mult)
    train_loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True)
    val_loader = torch.utils.data.DataLoader(val, batch_size=batch_size)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        net.train()
        for img, label in train_loader:
            optimizer.zero_grad()
            F.cross_entropy(net(img), label).backward()
            optimizer.step()
        history.append({"epoch": epoch + 1, "test_acc": _accuracy(net, val_loader)})
    return {"test_acc": history[-1]["test_acc"], "history": history}


# --- ours, as a user types it ---------------------------------------------------------------------------------------


def ours(data: str | None, note: str, seed: int, epochs: int, image_size: int, batch_size: int, lr: float,
         width_mult: float, preset: str, workdir: Path) -> dict:
    run_dir = workdir / f"ours-{note}-{preset}-seed{seed}"
    model = ["--model", "alexnet-d2l"] if note == "d2l" else ["--model", "alexnet-bn", "--width-mult", str(width_mult)]
    cmd = [sys.executable, "-m", "alexnet", "train", "--recipe", note, *model, "--image-size", str(image_size), "--opt", "adam",
           "--lr", str(lr), "--lr-schedule", "none", "--batch-size", str(batch_size), "--epochs", str(epochs),
           "--seed", str(seed), "--preset", preset, "--output-dir", str(run_dir), "--no-progress"]
    if data is not None:
        cmd += ["--data", data]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"alexnet train failed:\n{done.stderr[-3000:]}")
    with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {"test_acc": float(rows[-1]["val_top1"]),
            "history": [{"epoch": int(r["epoch"]), "test_acc": float(r["val_top1"])} for r in rows]}


# --- statistics -----------------------------------------------------------------------------------------------------


def t95(df: float) -> float:
    if not math.isfinite(df) or df > 60:
        return 1.96
    return T95[max(k for k in T95 if k <= max(1, math.floor(df)))]


def welch(a: list[float], b: list[float]) -> dict:
    """mean(b) - mean(a) with a 95% interval (Welch's t; needs two values per side)."""
    diff = statistics.mean(b) - statistics.mean(a)
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "low": None, "high": None}
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va**2 / (len(a) - 1)) + (vb**2 / (len(b) - 1))) if se > 0 else math.inf
    half = t95(df) * se
    return {"diff": diff, "low": diff - half, "high": diff + half, "df": df}


def verdict(ci: dict) -> str:
    if ci["low"] is None:
        return "one seed: no interval"
    if ci["high"] < 0:
        return "ours is worse beyond noise"
    if ci["low"] > 0:
        return "ours is better beyond noise"
    return "no difference beyond noise"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--note", choices=["d2l", "seed"], required=True)
    p.add_argument("--data", help="d2l: a folder with IDX files, or sklearn-digits; seed: train/ + val/ photo "
                   "folders (default: the built-in shapes)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--image-size", type=int)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width-mult", type=float, default=0.25, help="seed note only (d2l's class is full width)")
    p.add_argument("--ours-preset", nargs="+", help="the preset(s) ours runs with, each compared with the same note "
                   "runs (default: the note's own: d2l or seed)")
    p.add_argument("--train-limit", type=int, help="IDX: the first N training items")
    p.add_argument("--test-limit", type=int, help="IDX: the first N test items")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    image_size = args.image_size or (67 if args.note == "d2l" else 96)
    presets = args.ours_preset or [args.note]
    results: dict = {"note": args.note, "image_size": image_size, "batch_size": args.batch_size, "lr": args.lr,
                     "epochs": args.epochs, "ours_presets": presets, "seeds": [], "torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="alexnet-parity-") as tmp:
        work = Path(tmp)
        if args.note == "d2l":
            if not args.data:
                raise SystemExit("--note d2l needs --data: a folder with IDX files (MNIST, Fashion-MNIST), or "
                                 "sklearn-digits (needs scikit-learn)")
            source = sklearn_digits_idx(work / "digits") if args.data == "sklearn-digits" else Path(args.data)
            data = limited_idx_folder(source, work / "idx", args.train_limit, args.test_limit)
        else:
            if args.data:
                data = Path(args.data)
            else:
                from alexnet.data.synthetic import make_shapes

                data = Path(make_shapes())  # the built-in dataset (reused when it exists)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            start = time.perf_counter()
            if args.note == "d2l":
                note = d2l_note(data, seed, args.epochs, image_size, args.batch_size, args.lr)
            else:
                note = seed_note(data, seed, args.epochs, image_size, args.batch_size, args.lr, args.width_mult)
            row = {"seed": seed, "note": note["test_acc"], "note_history": note["history"]}
            for preset in presets:
                mine = ours(str(data), args.note, seed, args.epochs, image_size, args.batch_size, args.lr,
                            args.width_mult, preset, work)
                row[f"ours_{preset}"], row[f"ours_{preset}_history"] = mine["test_acc"], mine["history"]
            results["seeds"].append(row)
            print(f"seed {seed}: note {note['test_acc']:.4f}, "
                  + ", ".join(f"ours --preset {p} {row[f'ours_{p}']:.4f}" for p in presets)
                  + f" ({time.perf_counter() - start:.0f} s)", flush=True)
    a = [s["note"] for s in results["seeds"]]
    results.update({"note_mean": statistics.mean(a), "note_std": statistics.stdev(a) if len(a) > 1 else 0.0})
    print(f"note {results['note_mean']:.4f} +- {results['note_std']:.4f} ({args.seeds} seeds)")
    for preset in presets:
        b = [s[f"ours_{preset}"] for s in results["seeds"]]
        ci = welch(a, b)
        results[f"ours_{preset}"] = {"mean": statistics.mean(b), "std": statistics.stdev(b) if len(b) > 1 else 0.0,
                                     "diff": ci, "verdict": verdict(ci)}
        interval = "" if ci["low"] is None else f" [{ci['low']:+.4f}, {ci['high']:+.4f}]"
        print(f"ours --preset {preset}: {statistics.mean(b):.4f} +- {results[f'ours_{preset}']['std']:.4f}; "
              f"ours - note {ci['diff']:+.4f}{interval} (95%): {verdict(ci)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
