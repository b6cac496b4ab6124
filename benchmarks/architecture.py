"""The shape of the code, measured: the figures issue 10's closing note compares before and after.

    .venv/bin/python benchmarks/architecture.py [--src src/alexnet] [--json]

Reported (all from the source text, by Python's own parser; nothing is imported):
- the longest module and the longest function, in lines (a function's lines include its nested closures);
- import cycles between alexnet's modules: strongly connected groups of the import graph, counting imports inside
  functions too (a lazy import still ties two modules together), not those under `if TYPE_CHECKING:`;
- the modules that read checkpoint keys: a subscript or `.get()` with one of the checkpoint's top-level key names as
  a string constant, on a name that holds a checkpoint (`ckpt`, `checkpoint`, `state`, `obj`, `record`);
- the places an option is declared: for each `alexnet train` option, the config dataclass field, a FLAG_KEYS-style
  mapping entry, and a literal `add_argument("--flag")`, counted where each appears;
- choice lists written out more than once: the same tuple/list of two or more string constants in two modules;
- the layout: modules at the top level of the package (beside its subpackages);
- functions over 60 lines, each with whether a comment just above it gives a reason for its length;
- the function with the most parameters outside the CLI (`self`/`cls` not counted, `*args`/`**kwargs` counted);
- imports of alexnet's own modules made inside a function (a lazy import hides the dependency graph; heavy
  third-party modules such as torch are not counted).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

# The top-level keys of the checkpoint format 1 (tests/fixtures/tiny-v1.pt, written before the redesign).
CHECKPOINT_KEYS = {
    "best_val_top1", "chance_warned", "class_names", "config", "data", "epoch", "epoch_totals", "format",
    "format_version", "global_step", "image_size", "in_channels", "mean", "model", "model_args", "model_name",
    "optimizer", "preset", "rng", "sampler", "scaler", "scheduler", "std", "step_in_epoch", "versions", "world_size",
}
CHECKPOINT_NAMES = {"ckpt", "checkpoint", "state", "obj", "record"}


def modules(src: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def function_lengths(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((node.end_lineno - node.lineno + 1, node.name))
    return out


def long_functions(tree: ast.AST, lines: list[str], limit: int = 60) -> list[tuple[int, str, bool]]:
    """(length, name, has_reason) for every function longer than `limit` lines. The reason is a comment in the
    lines just above its decorators or `def` (as train_one_epoch has)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                above = lines[max(0, first - 4): first - 1]
                out.append((length, node.name, any(line.strip().startswith("#") for line in above)))
    return out


def parameter_counts(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
            count = len([n for n in names if n not in ("self", "cls")]) + bool(a.vararg) + bool(a.kwarg)
            out.append((count, node.name))
    return out


def inner_own_imports(tree: ast.AST, package: str = "alexnet") -> int:
    """Import statements of the package's own modules that sit inside a function body."""
    count = 0
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if not node.level else [package]  # relative: always the package's own
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            count += any(name.split(".")[0] == package for name in names)
    return count


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def imported(name: str, tree: ast.AST, known: set[str]) -> set[str]:
    """alexnet modules that module `name` imports, anywhere in its body."""
    package = name if name in known and any(k.startswith(name + ".") for k in known) else name.rpartition(".")[0]
    out = set()
    type_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue  # `if TYPE_CHECKING:` imports are for annotations; nothing is imported when the code runs
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # alexnet.data.cache.cache_split -> alexnet.data.cache
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def reads_checkpoint_keys(tree: ast.AST) -> set[str]:
    keys = set()
    for node in ast.walk(tree):
        holder, key = None, None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            holder, key = node.value, node.slice.value
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
              and node.args and isinstance(node.args[0], ast.Constant)):
            holder, key = node.func.value, node.args[0].value
        if isinstance(holder, ast.Name) and holder.id in CHECKPOINT_NAMES and key in CHECKPOINT_KEYS:
            keys.add(key)
    return keys


def option_places(trees: dict[str, ast.AST]) -> dict[str, list[str]]:
    """For each dotted config option: where it is declared (module:kind)."""
    places: dict[str, list[str]] = defaultdict(list)
    sections = {}
    config = trees.get("alexnet.config.specs", trees.get("alexnet.config"))  # the sections, since issue 22
    if config is not None:  # dataclass fields of the sections that TrainConfig holds
        for node in config.body:
            if isinstance(node, ast.ClassDef):
                fields = [s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
                sections[node.name] = fields
        train = dict.fromkeys(sections.get("TrainConfig", []))
        for node in config.body:
            if isinstance(node, ast.ClassDef) and node.name == "TrainConfig":
                for s in node.body:
                    if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name):
                        train[s.target.id] = ast.unparse(s.annotation)
        for section, cls in train.items():
            for field in sections.get(cls, []):
                places[f"{section}.{field}"].append("alexnet.config.specs:field")
    dotted = set(places)
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):  # a flag -> "section.field" mapping
                for k, v in zip(node.keys, node.values, strict=True):
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant) and v.value in dotted:
                        places[v.value].append(f"{name}:mapping")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add_argument"):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and str(arg.value).startswith("--"):
                        flag = arg.value[2:].replace("-", "_")
                        for option in dotted:
                            field = option.split(".", 1)[1]
                            if field == flag or (option == "data.source" and flag == "data") or (
                                    option == "model.name" and flag == "model") or (
                                    option == "data.root" and flag == "data_root"):
                                places[option].append(f"{name}:add_argument")
    return dict(places)


def repeated_choices(trees: dict[str, ast.AST]) -> dict[tuple[str, ...], list[str]]:
    seen: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2 and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                values = tuple(sorted(e.value for e in node.elts))
                if all(v.replace("-", "").replace("_", "").isalnum() and len(v) <= 16 for v in values):
                    seen[values].add(name)
    return {k: sorted(v) for k, v in seen.items() if len(v) >= 2}


def measure(src: Path) -> dict:
    mods = modules(src)
    texts = {name: path.read_text(encoding="utf-8") for name, path in mods.items()}
    trees = {name: ast.parse(text) for name, text in texts.items()}
    known = set(mods)
    graph = {name: imported(name, tree, known) for name, tree in trees.items()}
    longest_module = max((len(texts[n].splitlines()), n) for n in mods)
    functions = [(length, f"{n}.{fn}") for n, tree in trees.items() for length, fn in function_lengths(tree)]
    functions.sort(reverse=True)
    package = src.name
    top_level = sorted(n for n, path in mods.items()
                       if path.parent == src and path.name not in ("__init__.py", "__main__.py"))
    long = sorted(((length, f"{n}.{fn}", reason) for n, tree in trees.items()
                   for length, fn, reason in long_functions(tree, texts[n].splitlines())), reverse=True)
    params = sorted(((count, f"{n}.{fn}") for n, tree in trees.items() if not n.startswith(f"{package}.cli")
                     for count, fn in parameter_counts(tree)), reverse=True)
    inner = {n: k for n, tree in trees.items() if (k := inner_own_imports(tree, package))}
    readers = {n: sorted(keys) for n, tree in trees.items() if (keys := reads_checkpoint_keys(tree))}
    places = option_places(trees)
    counts = sorted(len(v) for v in places.values())
    return {
        "modules": len(mods),
        "longest_module": {"module": longest_module[1], "lines": longest_module[0]},
        "modules_over_400_lines": sorted(n for n in mods if len(texts[n].splitlines()) > 400),
        "longest_functions": [{"function": f, "lines": n} for n, f in functions[:5]],
        "functions_over_60_lines": sum(1 for n, _ in functions if n > 60),
        "long_functions": [{"function": f, "lines": n, "reason_given": r} for n, f, r in long],
        "top_level_modules": top_level,
        "most_parameters_outside_cli": [{"function": f, "parameters": n} for n, f in params[:5]],
        "inner_own_imports": sum(inner.values()),
        "inner_own_imports_by_module": dict(sorted(inner.items(), key=lambda kv: -kv[1])),
        "import_cycles": cycles(graph),
        "checkpoint_key_readers": readers,
        "option_places": {
            "options": len(places), "max": counts[-1] if counts else 0,
            "median": counts[len(counts) // 2] if counts else 0,
            "example": {"run.epochs": places.get("run.epochs", [])},
        },
        "repeated_choice_lists": [{"choices": list(k), "modules": v} for k, v in repeated_choices(trees).items()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src" / "alexnet"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(Path(args.src))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"modules: {result['modules']}")
    print(f"longest module: {result['longest_module']['module']} ({result['longest_module']['lines']} lines); "
          f"over 400 lines: {', '.join(result['modules_over_400_lines']) or 'none'}")
    print("longest functions: " + ", ".join(f"{f['function']} ({f['lines']})" for f in result["longest_functions"]))
    print(f"functions over 60 lines: {result['functions_over_60_lines']}" + "".join(
        f"\n  {f['function']} ({f['lines']}){'' if f['reason_given'] else ', no reason written above it'}"
        for f in result["long_functions"]))
    print(f"top-level modules (besides __init__ and __main__): {len(result['top_level_modules'])}: "
          + ", ".join(m.rpartition(".")[2] for m in result["top_level_modules"]))
    print("most parameters outside the CLI: " + ", ".join(
        f"{f['function']} ({f['parameters']})" for f in result["most_parameters_outside_cli"]))
    print(f"imports of alexnet's own modules inside functions: {result['inner_own_imports']} (most: " + ", ".join(
        f"{m} {k}" for m, k in list(result["inner_own_imports_by_module"].items())[:5]) + ")")
    print(f"import cycles: {len(result['import_cycles'])}" + "".join(
        f"\n  {' <-> '.join(c)}" for c in result["import_cycles"]))
    readers = result["checkpoint_key_readers"]
    print(f"modules reading checkpoint keys: {len(readers)}" + "".join(
        f"\n  {n}: {', '.join(k)}" for n, k in sorted(readers.items())))
    op = result["option_places"]
    print(f"places an option is declared: {op['options']} options, max {op['max']}, median {op['median']} "
          f"(run.epochs: {', '.join(op['example']['run.epochs'])})")
    print(f"choice lists written in more than one module: {len(result['repeated_choice_lists'])}" + "".join(
        f"\n  {c['choices']}: {', '.join(c['modules'])}" for c in result["repeated_choice_lists"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
