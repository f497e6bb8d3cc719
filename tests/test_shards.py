"""``clf predict --shard K/N`` and ``clf merge-predictions``: which files a part holds, and
parts that join into exactly what one unsharded run writes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import clf
from clf import DataError, UsageError
from clf.artifacts.predict import Prediction
from clf.artifacts.predict_output import to_csv, to_json
from clf.artifacts.shards import merge_predictions, parse_shard, shard_files, shard_of
from clf.cli import app

runner = CliRunner()


def test_shards_hold_every_file_once_whatever_the_order_or_the_other_files():
    files = [f"photos/{c}/{i:05d}.jpg" for c in ("cats", "dogs") for i in range(200)]
    parts = [shard_files(files, (k, 4)) for k in range(4)]
    assert sorted(f for part, _ in parts for f in part) == sorted(files)  # each file exactly once
    assert all(40 <= len(part) <= 160 for part, _ in parts)
    # A file's shard depends on its path alone: not on the order, not on the other files.
    owner = {f: k for k, (part, _) in enumerate(parts) for f in part}
    assert all(shard_of(f, 4) == owner[f] for f in reversed(files))
    grown = files[::3] + ["photos/cats/new.jpg"]
    assert all(f in shard_files(grown, (owner[f], 4))[0] for f in files[::3])
    # Each row knows its place in the unsharded list, and that list's length.
    part, columns = parts[1]
    assert [files[i] for i in columns["index"]] == part and set(columns["total"]) == {400}
    assert shard_files(files, None) == (files, None)


@pytest.mark.parametrize("text", ["4/4", "-1/2", "1", "a/b", "0/0"])
def test_bad_shard_is_a_usage_error(text):
    with pytest.raises(UsageError, match=r"expected K/N with 0 <= K < N"):
        parse_shard(text)
    assert parse_shard(" 2/3 ") == (2, 3)
    with pytest.raises(UsageError, match="reads CSV or JSON, not table"):
        parse_shard("0/2", "table")


def _parts(tmp_path, results, shards, fmt):
    write = to_json if fmt == "json" else to_csv
    paths = []
    for k in range(shards):
        picked, columns = shard_files([r.path for r in results], (k, shards))
        rows = [r for r in results if r.path in set(picked)]
        paths.append(tmp_path / f"part-{k}.{fmt}")
        paths[-1].write_text(write(rows, ["a", "b"], 2, columns))
    return paths


def test_merge_checks_that_every_part_is_there_once(tmp_path):
    results = [Prediction(f"img/{i}.png", [0.25, 0.75]) for i in range(12)] + [Prediction("bad.png", error="empty")]
    parts = _parts(tmp_path, results, 3, "csv")
    assert merge_predictions(parts[::-1]) == ("csv", to_csv(results, ["a", "b"], 2))
    with pytest.raises(DataError, match=r"hold \d+ of 13 files .*Pass all N parts"):
        merge_predictions(parts[1:])
    with pytest.raises(DataError, match="appears twice"):
        merge_predictions(parts + parts[:1])
    unsharded = tmp_path / "all.csv"
    unsharded.write_text(to_csv(results, ["a", "b"], 2))
    with pytest.raises(DataError, match="header must end with index,total"):
        merge_predictions([unsharded])
    json_parts = _parts(tmp_path, results, 2, "json")
    assert merge_predictions(json_parts) == ("json", to_json(results, ["a", "b"], 2))
    with pytest.raises(UsageError, match="mix formats"):
        merge_predictions([parts[0], json_parts[0]])


def test_sharded_predict_merges_into_the_unsharded_output(small_config, image_folder, tmp_path):
    run_dir = clf.run(small_config(verify=False)).run_dir
    (image_folder / "broken.jpg").write_bytes(b"not an image")  # an error row travels too
    args = ["predict", str(run_dir), str(image_folder / "bee"), str(image_folder), "--top-k", "2"]
    for fmt, shards in (("csv", 3), ("json", 2)):
        whole = tmp_path / f"all.{fmt}"
        assert runner.invoke(app, [*args, "--output", str(whole)]).exit_code == 1  # the broken file
        parts = [tmp_path / f"part-{k}-of-{shards}.{fmt}" for k in range(shards)]
        sizes = []
        for k, part in enumerate(parts):
            res = runner.invoke(app, [*args, "--shard", f"{k}/{shards}", "--output", str(part)])
            assert res.exit_code in (0, 1), res.output
            rows = json.loads(part.read_text()) if fmt == "json" else part.read_text().splitlines()[1:]
            sizes.append(len(rows))
        assert sum(sizes) == 6 + 18 + 1  # the bee photos are listed twice: each copy once
        merged = tmp_path / f"merged.{fmt}"
        res = runner.invoke(app, ["merge-predictions", *map(str, parts[::-1]), "--output", str(merged)])
        assert res.exit_code == 0, res.output
        assert merged.read_bytes() == whole.read_bytes()
    again = runner.invoke(app, ["merge-predictions", *map(str, parts), "--output", str(merged)])
    assert again.exit_code == 2 and "already exists" in again.output
    assert runner.invoke(app, [*args, "--shard", "0/2"]).exit_code == 2  # a table cannot be merged
