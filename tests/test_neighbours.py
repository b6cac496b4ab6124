"""Nearest neighbours in fc7 space (the paper's Figure 4) on a real tiny trained run: a copy finds its original,
a query is never its own neighbour, k is respected, the PNG and the JSON are real."""

import json
import shutil

import pytest
import torch
from PIL import Image

from alexnet.errors import ConfigError
from alexnet.features import extract_features
from alexnet.neighbours import find_neighbours, nearest, write_neighbours
from tiny_runs import run_cli


def test_nearest_by_hand():
    data = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    queries = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    d, i = nearest(queries, data, 2)
    assert i.tolist() == [[0, 2], [1, 3]] and d.tolist() == [[0.0, 1.0], [0.0, 13 ** 0.5]]  # (3, 4) to (0, 2)
    d, i = nearest(queries, data, 2, exclude=[[0], []])  # query 0 is data row 0: left out
    assert i.tolist() == [[2, 3], [1, 3]] and d[0].tolist() == [1.0, 2.0]
    assert nearest(queries, data, 10)[1].shape == (2, 4)  # k is at most the data's size
    with pytest.raises(ConfigError, match="no data images left"):
        nearest(queries[:1], data[:1], 1, exclude=[[0]])


def test_a_copy_finds_its_original_and_a_query_in_data_skips_itself(trained, tmp_path):
    data, run = trained
    original = data / "val" / "dog" / "dog.1.png"
    copy = tmp_path / "query.png"
    shutil.copyfile(original, copy)
    inside = data / "train" / "cat" / "cat.3.png"  # a query that is itself one of the data's files
    result = find_neighbours(run, [str(copy), str(inside)], str(data), k=3)
    assert list(result.neighbours) == [str(copy), str(inside)] and result.k == 3 and result.layer == "fc7"
    first = result.neighbours[str(copy)][0]
    assert first.file == str(original) and first.label == "dog" and first.distance == pytest.approx(0, abs=1e-4)
    own = result.neighbours[str(inside)]
    assert len(own) == 3 and str(inside) not in [n.file for n in own]
    # The distances are the Euclidean distances between the fc7 vectors, computed here from the features module.
    pool = extract_features(run, [str(data)], "fc7")
    query = extract_features(run, [str(inside)], "fc7").vectors[0]
    by_hand = sorted((float((pool.vectors[i] - query).norm()), f) for i, f in enumerate(pool.files) if f != str(inside))
    assert [n.file for n in own] == [f for _, f in by_hand[:3]]
    assert [n.distance for n in own] == pytest.approx([d for d, _ in by_hand[:3]], rel=1e-4, abs=1e-6)
    assert [n.distance for n in own] == sorted(n.distance for n in own) and own[0].distance > 1e-4
    assert all(n.label == n.file.split("/")[-2] for n in own)


def test_png_grid_and_json(trained, tmp_path):
    data, run = trained
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"junk")
    queries = [str(data / "val" / "cat" / "cat.0.jpg"), str(bad), str(data / "val" / "dog" / "dog.0.jpg")]
    result = find_neighbours(run, queries, str(data / "train"), k=2)
    assert set(result.neighbours) == {queries[0], queries[2]} and dict(result.skipped)[str(bad)]
    assert all(len(ns) == 2 for ns in result.neighbours.values())
    png, doc = write_neighbours(result, tmp_path / "out")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as img:
        img.verify()
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > img.height  # 2 rows of 3 cells, and a title
    saved = json.loads(doc.read_text())
    assert saved == json.loads(json.dumps(result.to_json()))
    assert saved["k"] == 2 and saved["layer"] == "fc7" and saved["skipped"] == [{"file": str(bad),
                                                                               "error": dict(result.skipped)[str(bad)]}]
    entry = saved["neighbours"][queries[0]]
    assert [set(n) for n in entry] == [{"file", "label", "distance"}] * 2
    assert all(n["file"].startswith(str(data / "train")) and n["label"] in ("cat", "dog") for n in entry)


def test_k_must_be_positive(trained):
    data, run = trained
    with pytest.raises(ConfigError, match="k must be >= 1, got 0"):
        find_neighbours(run, [str(data / "val" / "cat" / "cat.0.jpg")], str(data), k=0)


@pytest.mark.slow
def test_neighbours_cli(trained, tmp_path):
    data, run = trained
    query = str(data / "val" / "cat" / "cat.0.jpg")
    ok = run_cli("neighbours", "--checkpoint", str(run), query, "--data", str(data / "val"), "--top-k", "4",
                 "--output-dir", str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0] == f"{query}:" and len(lines) == 1 + 4 + 2  # 5 other val images, 4 asked for
    assert (tmp_path / "neighbours.png").is_file() and query not in ok.stdout.split(":", 1)[1]
    doc = json.loads((tmp_path / "neighbours.json").read_text())
    assert len(doc["neighbours"][query]) == 4
    bad = run_cli("neighbours", "--checkpoint", str(run), query, "--data", str(data), "--top-k", "0")
    assert bad.returncode == 2 and bad.stderr.strip() == "alexnet neighbours: error: --top-k must be >= 1, got 0"


def test_the_grid_stays_bounded_whatever_k_and_the_queries(tmp_path, monkeypatch):
    # Any --top-k or number of queries: the PNG draws at most GRID_ROWS x (1 + GRID_NEIGHBOURS) cells (all are in the
    # JSON). Made small here so that the test draws few cells.
    import alexnet.neighbours as nb
    from data_factories import noise, write_png

    monkeypatch.setattr(nb, "GRID_ROWS", 2)
    monkeypatch.setattr(nb, "GRID_NEIGHBOURS", 3)
    image = str(write_png(tmp_path / "a.png", noise((40, 40))))
    result = nb.NeighbourResult({f"q{i}": [nb.Neighbour(image, None, float(j)) for j in range(5)] for i in range(4)},
                                "fc7", "x.pt", [str(tmp_path)], 5)
    for i in range(4):  # the queries' own files
        write_png(tmp_path / f"q{i}", noise((40, 40), seed=i))
    monkeypatch.chdir(tmp_path)
    png, doc = write_neighbours(result, tmp_path / "out")
    with Image.open(png) as img:
        dpi = 100  # alexnet.inspect.plots._figure
        assert img.size == (round(nb.CELL_INCHES * 4 * dpi), round((nb.CELL_INCHES * 2 + 0.4) * dpi))  # 2 x (1 + 3)
    assert len(json.loads(doc.read_text())["neighbours"]) == 4


@pytest.mark.parametrize("as_json", [False, True])
def test_an_unreadable_query_or_data_file_makes_the_exit_status_1(trained, tmp_path, capsys, as_json):
    # One rule with predict: the readable queries still get their neighbours, the broken files are listed, and the
    # status says that not everything was read (in the table and in --json alike).
    from alexnet import cli
    from data_factories import truncated_jpeg

    data, run = trained
    pool = tmp_path / "pool"
    shutil.copytree(data / "val", pool)
    cut_data = truncated_jpeg(pool / "cat" / "cut.jpg")
    cut_query = truncated_jpeg(tmp_path / "query.jpg")
    query = str(data / "val" / "cat" / "cat.0.jpg")
    argv = ["neighbours", "--checkpoint", str(run), query, str(cut_query), "--in", str(pool), "--k", "2",
            "--output-dir", str(tmp_path / "out"), "--device", "cpu", *(["--json"] if as_json else [])]
    assert cli.main(argv) == 1
    printed = capsys.readouterr().out
    doc = json.loads((tmp_path / "out" / "neighbours.json").read_text())
    assert {s["file"] for s in doc["skipped"]} == {str(cut_data), str(cut_query)}
    assert list(doc["neighbours"]) == [query] and len(doc["neighbours"][query]) == 2
    assert (json.loads(printed) == doc) if as_json else (f"skipped {cut_query}: " in printed)
    argv.remove(str(cut_query))
    shutil.move(cut_data, tmp_path / "moved.jpg")
    assert cli.main(argv) == 0
