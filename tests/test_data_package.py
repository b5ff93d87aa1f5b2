"""data/ is a valid Frictionless data package, and every fact row names a source."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from frictionless import Package

from coursekit import DATA_DIR

DESCRIPTOR = json.loads((DATA_DIR / "datapackage.json").read_text(encoding="utf-8"))
TABLES = [r for r in DESCRIPTOR["resources"] if r.get("type") == "table"]
NOT_DATA = {"README.md", "datapackage.json"}


def validate(folder: Path):
    return Package(str(folder / "datapackage.json")).validate()


def test_package_validates():
    report = validate(DATA_DIR)
    assert report.valid, report.flatten(["resourceName", "rowNumber", "fieldName", "type", "note"])[:20]


def test_every_data_file_is_described():
    described = {r["path"] for r in DESCRIPTOR["resources"]}
    on_disk = {p.name for p in DATA_DIR.iterdir() if p.is_file() and p.name not in NOT_DATA}
    assert on_disk == described, f"undescribed: {on_disk - described}; missing: {described - on_disk}"


@pytest.mark.parametrize("resource", [r for r in TABLES if r["name"] != "sources"], ids=lambda r: r["name"])
def test_every_fact_table_has_sourced_rows(resource):
    fields = [f["name"] for f in resource["schema"]["fields"]]
    assert "source_id" in fields
    assert {"fields": ["source_id"], "reference": {"resource": "sources", "fields": ["source_id"]}} in \
        resource["schema"].get("foreignKeys", [])
    table = pd.read_csv(DATA_DIR / resource["path"])
    assert len(table) > 0
    assert table["source_id"].notna().all()
    for field in resource["schema"]["fields"]:
        assert field.get("description"), f"{resource['name']}.{field['name']} has no description"


def test_every_source_is_cited_and_has_an_address():
    sources = pd.read_csv(DATA_DIR / "sources.csv")
    cited = set()
    for r in TABLES:
        if r["name"] != "sources":
            table = pd.read_csv(DATA_DIR / r["path"], dtype=str)
            cited |= set(table["source_id"])
            # supporting sources are cited by id inside notes, e.g. "Supporting: voa_2020_09_28_embassy_threat"
            words = set(" ".join(table.fillna("").to_numpy().ravel()).replace(",", " ").replace(";", " ")
                        .replace("(", " ").replace(")", " ").replace(".", " ").split())
            cited |= words & set(sources["source_id"])
    assert set(sources["source_id"]) <= cited, f"sources never cited: {set(sources['source_id']) - cited}"
    web = sources["url"].str.match(r"https?://")
    # course-authored judgements (illustrative scores) have a URN, never a made-up web address
    own = sources["url"].str.startswith("urn:course:") & (sources["kind"] == "dataset")
    assert (web | own).all(), sources.loc[~(web | own), ["source_id", "url"]]


def test_validation_catches_a_broken_reference_and_a_changed_text(tmp_path: Path):
    """The validator is not a rubber stamp: a dangling source_id or an edited op-ed fails."""
    copy = tmp_path / "data"
    shutil.copytree(DATA_DIR, copy)
    table = pd.read_csv(copy / "oped_paragraphs.csv")
    table.loc[0, "source_id"] = "no_such_source"
    table.to_csv(copy / "oped_paragraphs.csv", index=False)
    report = validate(copy)
    assert not report.valid
    assert "foreign-key" in {e.type for task in report.tasks for e in task.errors}

    shutil.copy2(DATA_DIR / "oped_paragraphs.csv", copy / "oped_paragraphs.csv")
    (copy / "oped.txt").write_text((DATA_DIR / "oped.txt").read_text(encoding="utf-8").replace("mistake", "success"),
                                   encoding="utf-8")
    assert not validate(copy).valid


def test_data_dictionary_is_up_to_date():
    from coursekit import datadict

    assert (DATA_DIR / "README.md").read_text(encoding="utf-8") == datadict.updated_readme(), (
        "data/README.md is out of date: run `python -m coursekit.datadict`"
    )
