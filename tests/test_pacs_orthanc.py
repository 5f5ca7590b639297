"""`covidct pacs` against a real Orthanc (Debian `orthanc` + `orthanc-dicomweb`, started on
127.0.0.1 with authentication by tests/orthanc_server.py), with the small stand-in models of
analysis_fakes so each analysis takes seconds."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from analysis_fakes import fake_bundle, phantom
from covidct.cli import main
from covidct.config import AnalysisConfig
from covidct.errors import InputError
from covidct.pacs.changes import SeriesRef
from covidct.pacs.client import Credentials, PacsClient
from covidct.pacs.outputs import OutputProducer
from covidct.pacs.state import load_state
from covidct.pacs.worker import PacsWorker
from covidct.synth.dicom_writer import DicomQuirks, write_ct_series
from orthanc_server import PASSWORD, USER, dicomweb_plugin, orthanc_binary, start_orthanc

if orthanc_binary() is None or dicomweb_plugin() is None:
    pytest.skip("Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc "
                "orthanc-dicomweb; .ci/run does it)", allow_module_level=True)

AUTH = (USER, PASSWORD)
OVERLAYS = 2  # secondary captures per analysis (fewer than the default 6: quicker tests)
STUDIES = {"A": "1.2.826.0.1.3680043.8.498.1001", "B": "1.2.826.0.1.3680043.8.498.1002"}


@pytest.fixture(autouse=True)
def stand_in_models(monkeypatch):
    import covidct.models.registry as registry

    monkeypatch.setattr(registry, "load_bundle", lambda models_dir=None, **_: fake_bundle())


@pytest.fixture(scope="module")
def orthanc_server(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def orthanc(orthanc_server):
    """The module's Orthanc, emptied: no patient, an empty changes feed."""
    url = orthanc_server.url
    for patient in requests.get(f"{url}/patients", auth=AUTH, timeout=10).json():
        requests.delete(f"{url}/patients/{patient}", auth=AUTH, timeout=30).raise_for_status()
    requests.delete(f"{url}/changes", auth=AUTH, timeout=10).raise_for_status()
    return orthanc_server


@pytest.fixture(scope="module")
def study_files(tmp_path_factory) -> dict[str, list[Path]]:
    """Two studies: a 40-slice axial CT (96x96) with a localizer, a text SR and an RGB
    secondary capture beside it, as a modality would send them."""
    volume, _, _ = phantom(lesion=True)
    files = {}
    for n, (name, study_uid) in enumerate(STUDIES.items()):
        folder = tmp_path_factory.mktemp(f"study{name}")
        files[name] = write_ct_series(volume, folder, seed=n, study_uid=study_uid,
                                      patient_id=f"PACS-{name}",
                                      quirks=DicomQuirks(localizer=True, non_image_objects=True))
    return files


def upload(server, paths: list[Path]) -> None:
    for path in paths:
        requests.post(f"{server.url}/instances", data=path.read_bytes(), auth=AUTH,
                      timeout=30).raise_for_status()


def wait_stable(server, timeout_s: float = 30.0) -> None:
    """Until every series is stable (Orthanc's StableAge is 1 s in the test server)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        series = requests.get(f"{server.url}/series?expand", auth=AUTH, timeout=10).json()
        if series and all(s["IsStable"] for s in series):
            return
        time.sleep(0.3)
    raise AssertionError("Orthanc series did not become stable")


def covidct_outputs(server, study_uid: str) -> Counter:
    """(Modality, instance count) of the covidct output series in one study."""
    found = requests.post(f"{server.url}/tools/find", auth=AUTH, timeout=10, json={
        "Level": "Study", "Query": {"StudyInstanceUID": study_uid}}).json()
    kinds: Counter = Counter()
    for study_id in found:
        for series in requests.get(f"{server.url}/studies/{study_id}/series", auth=AUTH,
                                   timeout=10).json():
            first = series["Instances"][0]
            tags = requests.get(f"{server.url}/instances/{first}/simplified-tags", auth=AUTH,
                                timeout=10).json()
            if tags.get("Manufacturer") == "covidct" and tags["Modality"] != "CT" and \
                    tags.get("SeriesDescription", "").startswith("covidct "):
                kinds[(tags["Modality"], len(series["Instances"]))] += 1
    return kinds


def series_uids(server) -> list[str]:
    return [s["MainDicomTags"]["SeriesInstanceUID"] for s in requests.get(
        f"{server.url}/series?expand", auth=AUTH, timeout=10).json()]


def instance_count(server) -> int:
    return requests.get(f"{server.url}/statistics", auth=AUTH, timeout=10).json()[
        "CountInstances"]


def pacs_args(server, state: Path, *more: str) -> list[str]:
    return ["pacs", *more[:1], "--url", server.url, "--user", USER, "--password", PASSWORD,
            "--state", str(state), "--overlay-count", str(OVERLAYS), *more[1:]]


def worker(server, state: Path, producer=None) -> PacsWorker:
    client = PacsClient(server.url, Credentials(USER, PASSWORD))
    return PacsWorker(client, state, producer or quick_producer())


def quick_producer() -> OutputProducer:
    return OutputProducer(config=AnalysisConfig(overlay_count=OVERLAYS))


def test_watch_stores_one_seg_sr_and_sc_series_and_skips_the_rest(orthanc, study_files,
                                                                    tmp_path, capsys):
    upload(orthanc, study_files["A"])
    wait_stable(orthanc)
    state = tmp_path / "state.json"
    assert main(pacs_args(orthanc, state, "watch", "--once")) == 0
    out = capsys.readouterr().out
    assert "1 done" in out and "3 skipped" in out, out
    outputs = covidct_outputs(orthanc, STUDIES["A"])
    assert outputs == {("SEG", 1): 1, ("SR", 1): 1, ("OT", OVERLAYS): 1}, outputs
    doc = load_state(state)
    source = next(uid for uid, rec in doc.series.items() if rec.status == "done")
    expected = set(quick_producer().expected_series_uids(source).values())
    assert expected <= set(series_uids(orthanc))  # the worker finds its outputs by these
    reasons = sorted(rec.reason.split(" (")[0].split(",")[0] for rec in doc.series.values())
    assert [r.status for r in doc.series.values()].count("done") == 1
    assert any("localizer" in r for r in reasons) and any("modality SR" in r for r in reasons)
    # The outputs become stable in their turn: a second pass skips them and stores nothing.
    count = instance_count(orthanc)
    wait_stable(orthanc)
    assert main(pacs_args(orthanc, state, "watch", "--once")) == 0
    assert instance_count(orthanc) == count
    assert sum("covidct output" in r.reason for r in load_state(state).series.values()) == 3
    assert covidct_outputs(orthanc, STUDIES["A"]) == outputs


def test_restarts_lose_nothing_and_store_nothing_twice(orthanc, study_files, tmp_path,
                                                       monkeypatch):
    upload(orthanc, study_files["A"] + study_files["B"])
    wait_stable(orthanc)
    state = tmp_path / "state.json"
    # 1. killed right after storing study A's outputs, before saving that in its state
    first = worker(orthanc, state)
    real_record = PacsWorker._record

    def killed_after_store(self, ref, status, reason, stored=None):
        if stored:
            raise SystemExit("killed")
        return real_record(self, ref, status, reason, stored)

    monkeypatch.setattr(PacsWorker, "_record", killed_after_store)
    with pytest.raises(SystemExit):
        first.watch(once=True)
    monkeypatch.setattr(PacsWorker, "_record", real_record)
    stored_once = instance_count(orthanc)
    # 2. restarted, a few changes at a time (a worker stopped by --max-changes each time)
    analysed: list[Path] = []

    class Counting(OutputProducer):
        def __call__(self, series_dir: Path, out_dir: Path) -> list[Path]:
            analysed.append(series_dir)
            return super().__call__(series_dir, out_dir)

    counting = Counting(config=AnalysisConfig(overlay_count=OVERLAYS))
    for _ in range(200):
        summary = worker(orthanc, state, counting).watch(max_changes=7, once=True)
        if summary.changes == 0:
            break
    assert len(analysed) == 1  # study B only: A's outputs were found in the PACS
    for study_uid in STUDIES.values():
        kinds = Counter(m for m, _ in covidct_outputs(orthanc, study_uid).elements())
        assert kinds == {"SEG": 1, "SR": 1, "OT": 1}, (study_uid, kinds)
    done = [r for r in load_state(state).series.values() if r.status == "done"]
    assert len(done) == 2 and any("already in the PACS" in r.reason for r in done)
    assert instance_count(orthanc) > stored_once
    # 3. on demand, forced: analysed again, but every instance is already there
    total = instance_count(orthanc)
    records = worker(orthanc, state).run_study(STUDIES["B"], force=True)
    assert instance_count(orthanc) == total
    assert any("already in the PACS" in r.reason for r in records.values())


def test_a_failing_study_is_recorded_and_the_worker_goes_on(orthanc, study_files, tmp_path):
    upload(orthanc, study_files["A"] + study_files["B"])
    wait_stable(orthanc)
    seen: list[str] = []

    class Failing(OutputProducer):
        def __call__(self, series_dir: Path, out_dir: Path) -> list[Path]:
            seen.append(str(series_dir))
            raise InputError("no lung found in this series (test)")

    fails = Failing()

    state = tmp_path / "state.json"
    summary = worker(orthanc, state, fails).watch(once=True)
    assert len(seen) == 2 and summary.series["failed"] == 2  # went on past the first
    failed = [r for r in load_state(state).series.values() if r.status == "failed"]
    assert {r.study_uid for r in failed} == set(STUDIES.values())
    assert all("no lung found" in r.reason for r in failed)
    assert not covidct_outputs(orthanc, STUDIES["A"])


def test_run_one_study_on_demand_then_nothing_twice(orthanc, study_files, tmp_path, capsys):
    upload(orthanc, study_files["A"])
    state = tmp_path / "state.json"
    args = pacs_args(orthanc, state, "run", "--study", STUDIES["A"])
    assert main(args) == 0
    assert "done" in capsys.readouterr().out
    count = instance_count(orthanc)
    assert main(args) == 0
    assert instance_count(orthanc) == count
    assert len(covidct_outputs(orthanc, STUDIES["A"])) == 3


def test_wrong_password_and_unknown_study_give_clear_errors(orthanc, tmp_path, capsys):
    args = ["pacs", "watch", "--url", orthanc.url, "--user", USER, "--password", "wrong",
            "--state", str(tmp_path / "s.json"), "--once"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "refused the credentials (HTTP 401)" in err and "Traceback" not in err
    assert not (tmp_path / "s.json").exists()
    missing = pacs_args(orthanc, tmp_path / "s.json", "run", "--study", "1.2.3.4")
    assert main(missing) == 2
    assert "no study 1.2.3.4" in capsys.readouterr().err
    SeriesRef("1", "2")  # the public reference type stays importable


@pytest.mark.slow
def test_a_pacs_that_goes_down_mid_run_stops_the_worker_which_resumes_later(study_files,
                                                                             tmp_path):
    """Orthanc stops while the series is analysed: the store fails after its retries, the
    worker stops without recording the series or moving past its change; restarted on the
    same storage, the next worker analyses it and stores one SEG, SR and SC series."""
    from covidct.pacs.client import Backoff, PacsUnavailable

    root = tmp_path / "orthanc"
    server = start_orthanc(root)
    try:
        upload(server, study_files["A"])
        wait_stable(server)

        class StopsThePacs(OutputProducer):
            def __call__(self, series_dir: Path, out_dir: Path) -> list[Path]:
                server.stop()
                return super().__call__(series_dir, out_dir)

        state = tmp_path / "state.json"
        client = PacsClient(server.url, Credentials(USER, PASSWORD),
                            backoff=Backoff(attempts=3, base_s=0.1))
        down = PacsWorker(client, state, StopsThePacs(config=AnalysisConfig(overlay_count=1)))
        with pytest.raises(PacsUnavailable, match="after 3 attempts"):
            down.watch(once=True)
        before = load_state(state)
        assert not any(r.status == "done" for r in before.series.values())
        server = start_orthanc(root)  # same storage, new port
        summary = worker(server, state).watch(once=True)
        assert summary.series["done"] == 1
        kinds = Counter(m for m, _ in covidct_outputs(server, STUDIES["A"]).elements())
        assert kinds == {"SEG": 1, "SR": 1, "OT": 1}
    finally:
        server.stop()


@pytest.mark.slow
def test_a_worker_process_killed_mid_run_resumes_without_loss_or_duplicates(study_files,
                                                                             tmp_path):
    """`covidct pacs watch` in its own process (shipped models) is killed with SIGKILL once
    the first study's outputs are in the PACS; a second process finishes the job."""
    import os
    import signal
    import subprocess
    import sys

    server = start_orthanc(tmp_path / "orthanc")
    try:
        upload(server, study_files["A"] + study_files["B"])
        wait_stable(server)
        state = tmp_path / "state.json"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
               "COVIDCT_PACS_PASSWORD": PASSWORD}
        command = [sys.executable, "-m", "covidct", "pacs", "watch", "--url", server.url,
                   "--user", USER, "--state", str(state), "--overlay-count", "1", "-q"]
        first = subprocess.Popen([*command, "--poll-s", "1"], env=env)
        try:
            deadline = time.monotonic() + 300
            while not any(covidct_outputs(server, uid) for uid in STUDIES.values()):
                assert first.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        load_state(state)  # a killed worker leaves a readable state file
        time.sleep(2)  # the outputs stored so far become stable
        subprocess.run([*command, "--once"], env=env, check=True, timeout=600)
        for uid in STUDIES.values():
            kinds = Counter(m for m, _ in covidct_outputs(server, uid).elements())
            assert kinds == {"SEG": 1, "SR": 1, "OT": 1}, (uid, kinds)
        done = [r for r in load_state(state).series.values() if r.status == "done"]
        assert len(done) == 2
    finally:
        server.stop()
