"""``clf predict --shard K/N`` and ``clf merge-predictions``: which files a part holds, and
parts that join into exactly what one unsharded run writes."""

from __future__ import annotations

import json
import re

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
        # Each part names its model (the sha256 labels.json records for it) and its place.
        recorded = {d[:16] for d in json.loads((run_dir / "labels.json").read_text())["sha256"].values()}
        first = json.loads(parts[0].read_text())[0] if fmt == "json" else dict(zip(
            *[line.split(",") for line in parts[0].read_text().splitlines()[:2]]))
        assert first["model"] in recorded and first["shard"] == f"0/{shards}"
        merged = tmp_path / f"merged.{fmt}"
        res = runner.invoke(app, ["merge-predictions", *map(str, parts[::-1]), "--output", str(merged)])
        assert res.exit_code == 0, res.output
        assert merged.read_bytes() == whole.read_bytes()
        assert "known_score" in whole.read_text()  # the model's known score (issue 27) kept too
    again = runner.invoke(app, ["merge-predictions", *map(str, parts), "--output", str(merged)])
    assert again.exit_code == 2 and "already exists" in again.output
    assert runner.invoke(app, [*args, "--shard", "0/2"]).exit_code == 2  # a table cannot be merged


def _model_parts(tmp_path, results, shards, fmt, models):
    """Parts as clf predict --shard writes them, part k predicted by ``models[k]``."""
    write = to_json if fmt == "json" else to_csv
    paths = []
    for k in range(shards):
        picked, columns = shard_files([r.path for r in results], (k, shards), models[k])
        paths.append(tmp_path / f"m-part-{k}.{fmt}")
        paths[-1].write_text(write([r for r in results if r.path in set(picked)], ["a", "b"], 2, columns))
    return paths


RESULTS = [Prediction(f"img/{i}.png", [0.25, 0.75]) for i in range(12)] + [Prediction("bad.png", error="empty")]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_merge_refuses_parts_from_different_models_or_splits(tmp_path, fmt):
    same = _model_parts(tmp_path, RESULTS, 3, fmt, ["1a2b3c4d5e6f7a8b"] * 3)
    assert merge_predictions(same) == (fmt, (to_json if fmt == "json" else to_csv)(RESULTS, ["a", "b"], 2))
    (tmp_path / "mixed").mkdir()
    mixed = _model_parts(tmp_path / "mixed", RESULTS, 3, fmt, ["1a2b3c4d5e6f7a8b"] * 2 + ["ffffeeeeddddcccc"])
    with pytest.raises(DataError, match=r"different models .*m-part-2.*ffffeeeeddddcccc.*same model"):
        merge_predictions(mixed)
    # Part 0 of 2 and parts 1 and 2 of 3: one N for every part.
    (tmp_path / "two").mkdir()
    two = _model_parts(tmp_path / "two", RESULTS, 2, fmt, ["1a2b3c4d5e6f7a8b"] * 2)
    with pytest.raises(DataError, match=r"different numbers of parts.*same N"):
        merge_predictions([two[0], same[1], same[2]])


def test_merge_reads_parts_of_an_older_clf_with_a_note(tmp_path):
    old = []
    for k in range(3):  # as an older clf wrote them: index and total only, no model
        picked, columns = shard_files([r.path for r in RESULTS], (k, 3))
        old.append(tmp_path / f"old-{k}.csv")
        old[-1].write_text(to_csv([r for r in RESULTS if r.path in set(picked)], ["a", "b"], 2,
                                  {c: columns[c] for c in ("index", "total")}))
        assert old[-1].read_text().splitlines()[0].endswith(",error,index,total")
    notes: list[str] = []
    assert merge_predictions(old, notes) == ("csv", to_csv(RESULTS, ["a", "b"], 2))
    assert len(notes) == 1 and "no model fingerprint" in notes[0] and "old-0.csv" in notes[0]
    res = runner.invoke(app, ["merge-predictions", *map(str, old)])
    assert res.exit_code == 0 and "note:" in res.stderr and "no model fingerprint" in res.stderr


CSV_TAMPERING = [
    (lambda row: re.sub(r",[0-9]+,13\n$", ",abc,13\n", row), r"line 2: index is 'abc', not a whole number"),
    (lambda row: re.sub(r",[0-9]+,13\n$", ",-1,13\n", row), r"line 2: index is '-1', not a whole number"),
    (lambda row: row.split(",", 1)[1], r"line 2: 9 cells where the header has 10"),
    (lambda row: row.replace("0.750000", "1e400", 1), r"line 2: probability '1e400' is not a number between 0 and 1"),
    (lambda row: row.replace("0.750000", "nan", 1), r"line 2: probability 'nan'"),
    (lambda row: row.replace("1a2b3c4d5e6f7a8b", "ffffeeeeddddcccc"), r"line 3: model 1a2b3c4d5e6f7a8b part 0/3 differs from the rows above"),
]


@pytest.mark.parametrize("tamper, message", CSV_TAMPERING)
def test_merge_checks_every_csv_cell_and_names_the_line(tmp_path, tamper, message):
    parts = _model_parts(tmp_path, RESULTS, 3, "csv", ["1a2b3c4d5e6f7a8b"] * 3)
    header, first, *rest = parts[0].read_text().splitlines(keepends=True)
    parts[0].write_text(header + tamper(first) + "".join(rest))
    with pytest.raises(DataError, match=f"m-part-0.csv.*{message}"):
        merge_predictions(parts)


def test_merge_never_allocates_from_a_claimed_count(tmp_path):
    part = tmp_path / "claims.csv"
    rows = "".join(f"img/{i}.png,b,0.750000,a,0.250000,,1a2b3c4d5e6f7a8b,0/1,{i},{10 ** 12}\n" for i in range(3))
    part.write_text("path,class_1,probability_1,class_2,probability_2,error,model,shard,index,total\n" + rows)
    with pytest.raises(DataError, match=r"hold 3 of 1000000000000 files \(missing numbers 3, 4, .*\.\.\.\)"):
        merge_predictions([part])


JSON_TAMPERING = [
    ('"index": 0', '"index": null', r"line 2: index is null, not a whole number"),
    ('"index": 0', '"index": "abc"', r"line 2: index is 'abc', not a whole number"),
    ('"index": 0', '"index": true', r"line 2: index is true"),
    ('"probability": 0.75', '"probability": 1e400', r"line 2: probability Infinity is not a number between 0 and 1"),
    ('"probability": 0.75', '"probability": null', r"line 2: probability null"),
    ('"total": 13', '"total": 1' + "0" * 5000, r"not valid JSON"),
    ('"path": "img/', '"path": 7, "x": "', r"line 2: the keys"),
]


@pytest.mark.parametrize("old, new, message", JSON_TAMPERING)
def test_merge_checks_every_json_cell_and_names_the_line(tmp_path, old, new, message):
    parts = _model_parts(tmp_path, RESULTS, 3, "json", ["1a2b3c4d5e6f7a8b"] * 3)
    text = re.sub(r'"index": [0-9]+', '"index": 0', parts[0].read_text(), count=1)
    assert old in text
    parts[0].write_text(text.replace(old, new, 1))
    with pytest.raises(DataError, match=f"m-part-0.json.*{message}"):
        merge_predictions(parts)
