"""The layout of issue 22 holds: the names users import, the old module paths for one release, and the shape of the
code (benchmarks/architecture.py's measures) within the limits the issue set."""

import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import alexnet  # noqa: E402
import architecture  # noqa: E402

PUBLIC = ["AlexNet", "AlexNetConfig", "build_model", "list_models", "Checkpoint", "load_checkpoint", "TrainConfig",
          "resolve_config", "fit", "FitResult"]


def test_the_names_a_user_needs_come_from_the_package():
    from alexnet import build_model, list_models

    assert set(PUBLIC) <= set(alexnet.__all__) and set(PUBLIC) <= set(dir(alexnet))
    model = build_model("alexnet-bn", num_classes=2, width_mult=0.125, image_size=67)
    assert type(model) is alexnet.AlexNet and "alexnet-owt" in list_models()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        alexnet.nope  # noqa: B018


def test_importing_the_package_and_its_config_loads_no_torch():
    code = ("import sys, alexnet, alexnet.config, alexnet.models.registry, alexnet.models.architecture; "
            "alexnet.models.registry.list_models(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("old, new", sorted(alexnet.MOVED_MODULES.items()))
def test_an_old_module_path_is_the_new_module_with_a_warning(old, new):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__spec__.name == new  # the real module keeps its own spec
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)


def test_the_readme_s_old_import_still_works():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from alexnet.pretrained import load_torchvision_weights
    from alexnet.models.pretrained import load_torchvision_weights as new

    assert load_torchvision_weights is new


def test_the_code_keeps_the_shape_issue_22_set():
    result = architecture.measure(ROOT / "src" / "alexnet")
    assert result["import_cycles"] == []
    assert len(result["top_level_modules"]) <= 12, result["top_level_modules"]
    long = result["long_functions"]
    assert len(long) <= 3 and all(f["lines"] <= 80 and f["reason_given"] for f in long), long
    assert result["longest_module"]["lines"] <= 450, result["longest_module"]
    widest = result["most_parameters_outside_cli"][0]
    assert widest["parameters"] <= 8, widest
    assert result["inner_own_imports"] <= 70, result["inner_own_imports_by_module"]
    assert result["repeated_choice_lists"] == []


def test_the_measures_see_what_they_count(tmp_path):
    """architecture.py on a small package with a cycle, a long function, a wide one and an inner import."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n\n\ndef wide(a, b, c, d, e, f, g, h, i):\n    from pkg import b\n")
    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    (pkg / "b.py").write_text(f"import pkg.a\n\n\ndef long():\n{body}\n")
    result = architecture.measure(pkg)
    assert result["import_cycles"] == [["pkg.a", "pkg.b"]]
    assert [(f["function"], f["reason_given"]) for f in result["long_functions"]] == [("pkg.b.long", False)]
    assert result["most_parameters_outside_cli"][0] == {"function": "pkg.a.wide", "parameters": 9}
    assert result["inner_own_imports"] == 1 and result["top_level_modules"] == ["pkg.a", "pkg.b"]


@pytest.mark.slow
def test_the_readme_s_python_example_runs(tmp_path):
    """The README's Python block, as a user would paste it (one epoch of the demo recipe on the built-in data)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("In Python (each line runs as it is):\n```python\n", 1)[1].split("```", 1)[0]
    out = subprocess.run([sys.executable, "-c", block + "print(ckpt.model_name, len(ckpt.class_names))"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "alexnet-bn 6"
