"""Where a CPU training step's time goes when glibc's malloc gives each step's activations back to the system.

    python benchmarks/step_memory.py [--repeats 3] [--steps 20]

Each case runs in fresh processes, with `ALEXNET_KEEP_FREED_MEMORY=0` (the allocator's own policy) and `=1`
(alexnet.runtime.memory.keep_freed_memory, what `alexnet train` does on a CPU), alternating. A process trains one
model on one fixed random batch: 3 warm-up steps, then `--steps` timed ones. Printed per case and policy: the
median step over the processes' medians, and per step the system time and the minor page faults (the kernel
zeroing a page the process touches again). The cases are the recipes' own models: cifar10-fast's cc-80sec with
BatchNorm at 32 px (its batch of 128, and 256) and fast's alexnet-bn x0.5 at 128 px (batch 128), in fp32 and
channels_last. The results are in
benchmarks/README.md ("Where a CPU step's time goes").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CASES = {  # name: (model, width, image size, batch, classes), as the recipes build them
    "cc-80sec + BN 32 px, batch 256": ("cc-80sec", 1.0, 32, 256, 10),
    "cc-80sec + BN 32 px, batch 128 (cifar10-fast)": ("cc-80sec", 1.0, 32, 128, 10),
    "alexnet-bn x0.5 128 px, batch 128 (fast)": ("alexnet-bn", 0.5, 128, 128, 10),
}

ONE_PROCESS = """
import json, resource, sys, time
from alexnet.runtime.memory import keep_freed_memory
keep_freed_memory()  # a no-op under ALEXNET_KEEP_FREED_MEMORY=0
import torch
from alexnet.models.alexnet import build_model
name, width, size, batch, classes, steps = json.loads(sys.argv[1])
torch.manual_seed(0)
extra = {"norm": "bn", "init": "kaiming"} if name.startswith("cc-") else {"image_size": size}
model = build_model(name, num_classes=classes, width_mult=width, **extra).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
y = torch.randint(0, classes, (batch,))
def step():
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for _ in range(3):
    step()
before, times = resource.getrusage(resource.RUSAGE_SELF), []
for _ in range(steps):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
after = resource.getrusage(resource.RUSAGE_SELF)
times.sort()
print(json.dumps({"step_s": times[len(times) // 2], "sys_s": (after.ru_stime - before.ru_stime) / steps,
                  "faults": (after.ru_minflt - before.ru_minflt) / steps}))
"""


def one_process(case: tuple, steps: int, keep: bool) -> dict:
    env = {**os.environ, "ALEXNET_KEEP_FREED_MEMORY": "1" if keep else "0"}
    out = subprocess.run([sys.executable, "-c", ONE_PROCESS, json.dumps([*case, steps])], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="processes per case and policy (alternating)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per process")
    args = parser.parse_args()
    print("| model | malloc policy | step s (median) | system s per step | page faults per step | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for label, case in CASES.items():
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.repeats):
            for keep in (False, True):
                runs[keep].append(one_process(case, args.steps, keep))
        medians = {keep: statistics.median(r["step_s"] for r in rs) for keep, rs in runs.items()}
        for keep, rs in runs.items():
            name = "keep freed memory (alexnet train)" if keep else "glibc default"
            ratio = f"{medians[False] / medians[True]:.2f}x" if keep else ""
            print(f"| {label} | {name} | {medians[keep]:.4f} | {statistics.median(r['sys_s'] for r in rs):.4f} | "
                  f"{statistics.median(r['faults'] for r in rs):,.0f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
