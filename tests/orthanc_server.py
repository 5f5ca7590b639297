"""A real Orthanc (Debian packages `orthanc` and `orthanc-dicomweb`) for the PACS tests.

Started on 127.0.0.1 with a free HTTP port, authentication on, storage in a temporary
folder, the DICOM port off and the DICOMweb plugin loaded; stopped by its process id.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

USER = "covidct-test"
PASSWORD = "s3cret-for-tests"
PLUGIN_CANDIDATES = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    Path("/usr/lib/orthanc/libOrthancDicomWeb.so"),
)


def orthanc_binary() -> str | None:
    """The Orthanc executable (Debian installs it in /usr/sbin), or None."""
    return shutil.which("Orthanc") or next(
        (str(p) for p in (Path("/usr/sbin/Orthanc"),) if p.is_file()), None)


def dicomweb_plugin() -> Path | None:
    """The DICOMweb plugin's shared library from the orthanc-dicomweb package, or None."""
    found = next((p for p in PLUGIN_CANDIDATES if p.is_file()), None)
    if found is None:
        try:
            listing = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True,
                                     text=True, check=False).stdout.split()
        except OSError:
            return None
        found = next((Path(p) for p in listing if "DicomWeb" in p and ".so" in p), None)
    return found


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies (Linux prctl), so a
    killed test run leaves no Orthanc behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OrthancServer:
    """One running Orthanc; `url` is its HTTP root, `dicomweb_url` the DICOMweb root."""

    process: subprocess.Popen
    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_orthanc(root: Path, *, stable_age_s: int = 1, timeout_s: float = 30.0) -> OrthancServer:
    """Start Orthanc with its storage under ``root``; waits until its REST API answers."""
    binary, plugin = orthanc_binary(), dicomweb_plugin()
    if binary is None or plugin is None:
        raise FileNotFoundError("Orthanc or its DICOMweb plugin is not installed "
                                "(apt-get install orthanc orthanc-dicomweb)")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "Name": "covidct-test",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "HttpPort": port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "DicomServerEnabled": False,
        "StableAge": stable_age_s,
        "SaveJobs": False,
        "HttpThreadsCount": 8,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                     "Host": f"127.0.0.1:{port}", "Ssl": False},
    }
    config_path = root / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = open(root / "orthanc.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen([binary, str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                               cwd=root, preexec_fn=_die_with_parent)
    log.close()
    server = OrthancServer(process, port, root)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {process.returncode}; see "
                               f"{root / 'orthanc.log'}:\n{(root / 'orthanc.log').read_text()}")
        try:
            answer = requests.get(f"{server.url}/system", auth=(USER, PASSWORD), timeout=1)
            if answer.ok:
                plugins = requests.get(f"{server.url}/plugins", auth=(USER, PASSWORD),
                                       timeout=2).json()
                if "dicom-web" not in plugins:
                    server.stop()
                    raise RuntimeError(f"Orthanc started without the DICOMweb plugin: {plugins}")
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer within {timeout_s} s; see {root / 'orthanc.log'}")
