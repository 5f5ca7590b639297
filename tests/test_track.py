"""`covidct track` on analyze outputs of one patient at two dates."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest

from analysis_fakes import fake_bundle, phantom
from covidct.cli import main
from covidct.config import AnalysisConfig
from covidct.export.outputs import write_outputs
from covidct.pipeline import analyze


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("track")
    folders = []
    for name, lesion, date in (("later", True, "20200320"), ("earlier", False, "20200301")):
        volume, _, _ = phantom(lesion=lesion)
        volume = replace(volume, metadata={**volume.metadata, "study_date": date,
                                           "patient_id": "P1"})
        result = analyze(volume, AnalysisConfig(overlay_count=0), fake_bundle())
        write_outputs(result, root / name, report=False)
        folders.append(root / name)
    return root, folders


def test_track_sorts_by_study_date_and_writes_table_plot_json_csv(two_studies, capsys):
    root, (later, earlier) = two_studies
    plot, js, table = root / "track.png", root / "track.json", root / "track.csv"
    rc = main(["track", str(later), str(earlier / "result.json"), "--plot", str(plot),
               "--json", str(js), "--csv", str(table)])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["#", "study", "date"]
    assert "2020-03-01" in lines[1] and "not-suspected" in lines[1]
    assert "2020-03-20" in lines[2] and "covid-suspected" in lines[2]
    assert plot.stat().st_size > 1000
    studies = json.loads(js.read_text())["studies"]
    assert [s["study_date"] for s in studies] == ["2020-03-01", "2020-03-20"]
    assert studies[0]["corona_score_cm3"] == 0.0 and studies[1]["corona_score_cm3"] > 0
    assert studies[1]["corona_change_cm3"] == pytest.approx(studies[1]["corona_score_cm3"])
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 2 and float(rows[1]["infection_cm3"]) > 0


def test_track_refuses_a_folder_without_result(tmp_path, capsys):
    assert main(["track", str(tmp_path)]) == 2
    assert "result.json" in capsys.readouterr().err
