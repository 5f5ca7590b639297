"""The PACS worker end to end on real CT: a real Orthanc, the shipped models.

Starts Orthanc with its DICOMweb plugin (tests/orthanc_server.py: 127.0.0.1, authentication
on, temporary storage), uploads each real series (plus a synthetic localizer and text SR in
the same study, so the selection has something to skip), runs one `covidct pacs watch --once`
pass, and records per series what the worker did and its time split (WADO-RS retrieve,
analysis + DICOM writing, STOW-RS store). A second pass must store nothing.

    PYTHONPATH=src .venv/bin/python benchmarks/pacs_worker.py [SERIES_DIR ...]

Default series: COVID-CT-MD P001 and normal001 (../shared/data/real/covid-ct-md; validation
only, nothing is trained here). Writes benchmarks/results/pacs_worker.txt.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

import pydicom
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the test Orthanc launcher

from orthanc_server import PASSWORD, USER, start_orthanc  # noqa: E402

RESULTS = HERE / "results"
REAL = HERE.parents[1] / "shared" / "data" / "real"
if not REAL.is_dir():
    REAL = Path("/work/shared/data/real")
DEFAULT = [REAL / "covid-ct-md" / "P001", REAL / "covid-ct-md" / "normal001"]


def upload(url: str, folder: Path) -> tuple[str, str, int]:
    """Every DICOM file of ``folder`` by Orthanc's REST API; returns (study UID, patient ID,
    count)."""
    study, patient, count = "", "", 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        answer = requests.post(f"{url}/instances", data=data, auth=(USER, PASSWORD), timeout=60)
        if answer.ok:
            count += 1
            if not study:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                study, patient = str(ds.StudyInstanceUID), str(ds.PatientID)
    return study, patient, count


def extras(study_uid: str, patient_id: str, folder: Path) -> list[Path]:
    """A localizer and a text SR in the study (the synthetic writer's quirks)."""
    import numpy as np

    from covidct.synth.dicom_writer import DicomQuirks, write_ct_series
    from covidct.volume import Volume

    hu = np.full((20, 32, 32), -1000, np.int16)
    paths = write_ct_series(Volume.from_spacing(hu, (5.0, 10.0, 10.0), (0.0, 0.0, 0.0)),
                            folder, study_uid=study_uid, patient_id=patient_id,
                            quirks=DicomQuirks(localizer=True, non_image_objects=True))
    return [p for p in paths if p.name.startswith(("SCOUT", "SR"))]


def main(argv: list[str]) -> int:
    from covidct.cli import main as covidct_main
    from covidct.pacs.state import load_state

    series = [Path(a) for a in argv] or DEFAULT
    lines = [f"# covidct pacs watch on real CT ({platform.machine()}, "
             f"{platform.python_version()}), `python benchmarks/pacs_worker.py`", ""]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = start_orthanc(tmp / "orthanc")
        try:
            for n, folder in enumerate(series):
                study, patient, count = upload(server.url, folder)
                for path in extras(study, patient, tmp / f"extra{n}"):
                    requests.post(f"{server.url}/instances", data=path.read_bytes(),
                                  auth=(USER, PASSWORD), timeout=60).raise_for_status()
                lines.append(f"uploaded {folder.name}: {count} images, study {study}")
            time.sleep(2.5)  # StableAge 1 s
            state = tmp / "state.json"
            args = ["pacs", "watch", "--url", server.url, "--user", USER, "--password",
                    PASSWORD, "--state", str(state), "--once", "-q"]
            started = time.perf_counter()
            assert covidct_main(args) == 0
            first = time.perf_counter() - started
            count = requests.get(f"{server.url}/statistics", auth=(USER, PASSWORD),
                                 timeout=10).json()["CountInstances"]
            time.sleep(2.5)
            assert covidct_main(args) == 0
            again = requests.get(f"{server.url}/statistics", auth=(USER, PASSWORD),
                                 timeout=10).json()["CountInstances"]
            lines.append("")
            lines.append("first pass, per series (status: reason):")
            for uid, rec in load_state(state).series.items():
                lines.append(f"  {rec.status:7s} {uid[-24:]}: {rec.reason}")
            lines.append(f"first pass wall time: {first:.1f} s; instances in the PACS after "
                         f"it: {count}; after a second pass: {again} "
                         f"({'nothing stored twice' if again == count else 'DUPLICATES'})")
        finally:
            server.stop()
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pacs_worker.txt").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
