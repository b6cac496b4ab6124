"""Is the built-in `shapes` dataset a real learning task? A linear model on raw pixels vs a small AlexNet.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/linear_baseline.py                 # both, default sizes
    .venv/bin/python benchmarks/linear_baseline.py --skip-cnn --json out.json         # linear model only

Linear: multinomial logistic regression on the normalised raw pixels (C*S*S inputs), trained with Adam and weight
decay on the full training set for `--linear-epochs`, with the best validation accuracy over epochs reported (an
upper bound for what the linear model can do here). CNN: `alexnet-bn` at width 0.25 trained with Adam on the uint8
cache + BatchAugment (no augmentation), `--cnn-epochs`, validation accuracy after each epoch with the wall time.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

# Hyperparameters (units in the names).
IMAGE_SIZE_PX = 67  # alexnet-bn's smallest valid input
LINEAR_EPOCHS = 30
LINEAR_LR = 1e-3
LINEAR_WEIGHT_DECAY = 1e-4
CNN_EPOCHS = 8
CNN_LR = 1e-3
BATCH = 128


def evaluate(model, x_u8, y, aug, batch=512) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            correct += (model(aug(x_u8[i : i + batch])).argmax(1) == y[i : i + batch]).sum().item()
    return correct / len(y)


def train(model, xs, ys, xv, yv, aug, epochs, lr, weight_decay, seed, label, eval_aug=None):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history, start = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(ys), generator=g)
        total = 0.0
        for i in range(0, len(ys), BATCH):
            idx = perm[i : i + BATCH]
            loss = F.cross_entropy(model(aug(xs[idx])), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        acc = evaluate(model, xv, yv, eval_aug or aug)
        elapsed = time.perf_counter() - start
        history.append({"epoch": epoch, "loss": total / len(ys), "val_acc": acc, "seconds": round(elapsed, 1)})
        print(f"{label} epoch {epoch}: loss {total / len(ys):.4f}, val acc {acc:.3f}, {elapsed:.0f} s", flush=True)
    return history


def main() -> None:
    from alexnet.data import build_datasets
    from alexnet.data.augment import BatchAugment
    from alexnet.data.cache import cache_split

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image-size", type=int, default=IMAGE_SIZE_PX)
    p.add_argument("--linear-epochs", type=int, default=LINEAR_EPOCHS)
    p.add_argument("--cnn-epochs", type=int, default=CNN_EPOCHS)
    p.add_argument("--skip-cnn", action="store_true")
    p.add_argument("--augment", action="store_true", help="train the CNN with the seed note's rotation + flip")
    p.add_argument("--train-per-class", type=int, help="shapes images per class (default: the built-in size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    start = time.perf_counter()
    from alexnet.data.synthetic import ShapesConfig

    shapes = ShapesConfig(train_per_class=args.train_per_class) if args.train_per_class else None
    bundle = build_datasets("shapes", image_size=args.image_size, preset="seed", shapes=shapes)
    train_c, val_c = cache_split(bundle, "train"), cache_split(bundle, "val")
    print(
        f"shapes: {len(train_c)} train / {len(val_c)} val images, {bundle.num_classes} classes, "
        f"ready in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    aug = BatchAugment("seed", args.image_size, bundle.mean, bundle.std, train=False)
    results: dict = {"classes": bundle.class_names, "image_size": args.image_size, "chance": 1 / bundle.num_classes}

    d = bundle.in_channels * args.image_size**2
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, bundle.num_classes))
    hist = train(linear, train_c.images, train_c.labels, val_c.images, val_c.labels, aug, args.linear_epochs,
                 LINEAR_LR, LINEAR_WEIGHT_DECAY, args.seed, "linear")  # fmt: skip
    results["linear"] = {"best_val_acc": max(h["val_acc"] for h in hist), "history": hist}
    train_acc = evaluate(linear, train_c.images, train_c.labels, aug)
    results["linear"]["final_train_acc"] = train_acc
    print(f"linear: best val acc {results['linear']['best_val_acc']:.3f} (final train acc {train_acc:.3f})")

    if not args.skip_cnn:
        from alexnet.models import build_model

        model = build_model("alexnet-bn", width_mult=0.25, image_size=args.image_size, num_classes=bundle.num_classes)
        train_aug = BatchAugment("seed", args.image_size, bundle.mean, bundle.std, train=True, augment=True,
                                 generator=torch.Generator().manual_seed(args.seed)) if args.augment else aug  # fmt: skip
        hist = train(model, train_c.images, train_c.labels, val_c.images, val_c.labels, train_aug, args.cnn_epochs,
                     CNN_LR, 0.0, args.seed, "alexnet-bn x0.25", eval_aug=aug)  # fmt: skip
        results["cnn"] = {"model": "alexnet-bn width_mult=0.25", "final_val_acc": hist[-1]["val_acc"], "history": hist}
        print(f"alexnet-bn x0.25: val acc {hist[-1]['val_acc']:.3f} after {hist[-1]['seconds']:.0f} s of training")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
