"""covidct.pacs without a server: series selection, the state file, credentials, backoff."""

from __future__ import annotations

import json

import pytest

from covidct.errors import InputError
from covidct.pacs.client import Backoff, Credentials, PacsClient, PacsUnavailable
from covidct.pacs.selection import CT_IMAGE_SOP_CLASSES, select_series
from covidct.pacs.state import DONE, FAILED, load_state, save_state
from orthanc_server import free_port

CT = sorted(CT_IMAGE_SOP_CLASSES)[0]
AXIAL = [1, 0, 0, 0, 1, 0]


def _item(modality="CT", sop=CT, image_type=("ORIGINAL", "PRIMARY", "AXIAL"), iop=AXIAL,
          model="scanner"):
    def el(vr, *values):
        return {"vr": vr, "Value": list(values)}
    return {"00080060": el("CS", modality), "00080016": el("UI", sop),
            "00080008": el("CS", *image_type), "00200037": el("DS", *iop),
            "00081090": el("LO", model)}


def test_axial_ct_is_selected_and_the_rest_skipped_with_reasons():
    assert select_series([_item()] * 40).accept
    cases = {
        "modality SR": [_item(modality="SR", sop="1.2.840.10008.5.1.4.1.1.88.11")],
        "covidct output": [_item(modality="SEG", model="covidct")],
        "covidct output (SR)": [{**_item(modality="SR", sop="1.2.840.10008.5.1.4.1.1.88.22"),
                                 "00080070": {"vr": "LO", "Value": ["covidct"]},
                                 "0008103E": {"vr": "LO", "Value": ["covidct measurements"]}}],
        "localizer": [_item(image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))],
        "not axial": [_item(iop=[1, 0, 0, 0, 0, -1])] * 40,
        "at least": [_item()] * 5,
        "not CT images": [_item(sop="1.2.840.10008.5.1.4.1.1.7")] * 40,
    }
    for expected, instances in cases.items():
        verdict = select_series(instances)
        expected = expected.split(" (")[0]
        assert not verdict.accept and expected in verdict.reason, (expected, verdict)
    # a gantry tilt of 20 degrees is still axial; a lone localizer among images is ignored
    tilted = [0, 0.9396926, 0.3420201]
    series = [_item(iop=[1, 0, 0, *tilted])] * 39 + [_item(image_type=("LOCALIZER",))]
    assert select_series(series).accept


def test_state_round_trips_atomically_and_rejects_a_foreign_file(tmp_path):
    path = tmp_path / "state.json"
    state = load_state(path)
    assert state.last_seq == 0 and not state.series
    state.last_seq = 42
    state.record("1.2.3", DONE, "1.2", "stored 3", ["4.5.6"])
    state.record("1.2.4", FAILED, "1.2", "no lung")
    save_state(state, path)
    again = load_state(path)
    assert again.last_seq == 42 and again.is_done("1.2.3") and not again.is_done("1.2.4")
    assert again.series["1.2.4"].reason == "no lung"
    assert again.series["1.2.3"].stored_sop_uids == ["4.5.6"]
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left over
    path.write_text(json.dumps({"something": "else"}))
    with pytest.raises(InputError, match="cannot be read"):
        load_state(path)


def test_credentials_options():
    assert Credentials.from_options("u", "p", None) == Credentials("u", "p")
    with pytest.raises(InputError, match="go together"):
        Credentials.from_options("u", None, None)
    with pytest.raises(InputError, match="not both"):
        Credentials.from_options("u", "p", __import__("pathlib").Path("t"))


def test_token_file(tmp_path):
    token = tmp_path / "token"
    token.write_text("abc.def\n")
    assert Credentials.from_options(None, None, token).token == "abc.def"
    token.write_text("")
    with pytest.raises(InputError, match="empty"):
        Credentials.from_options(None, None, token)
    client = PacsClient("http://127.0.0.1:1", Credentials(token="abc"))
    assert client.session.headers["Authorization"] == "Bearer abc"


def test_a_pacs_that_is_down_is_retried_with_bounded_exponential_backoff():
    waits: list[float] = []
    client = PacsClient(f"http://127.0.0.1:{free_port()}", backoff=Backoff(attempts=5),
                        timeout_s=2, sleep=waits.append)
    with pytest.raises(PacsUnavailable, match="after 5 attempts"):
        client.check()
    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert Backoff(attempts=10, max_s=10).delay_s(9) == 10.0


def test_http_errors_are_retried_then_answered_and_401_is_not(tmp_path):
    """A stub PACS that answers 503 twice, then 200 (and 401 to a wrong token)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from covidct.pacs.client import PacsAuthError

    calls: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            calls.append(self.path)
            if self.headers.get("Authorization") != "Bearer good":
                status, body = 401, b"{}"
            elif len(calls) <= 2:
                status, body = 503, b"{}"
            else:
                status, body = 200, b'{"Name": "stub"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        waits: list[float] = []
        client = PacsClient(url, Credentials(token="good"), sleep=waits.append)
        assert client.check() == {"Name": "stub"}
        assert waits == [0.5, 1.0] and calls == ["/system"] * 3
        calls.clear()
        with pytest.raises(PacsAuthError, match="HTTP 401"):
            PacsClient(url, Credentials(token="bad"), sleep=waits.append).check()
        assert calls == ["/system"]  # not retried
    finally:
        server.shutdown()
        server.server_close()


def test_cli_with_the_pacs_down_exits_2_with_a_message(tmp_path, capsys):
    from covidct.cli import main

    code = main(["pacs", "watch", "--url", f"http://127.0.0.1:{free_port()}", "--retries", "2",
                 "--state", str(tmp_path / "s.json"), "--once"])
    err = capsys.readouterr().err
    assert code == 2 and "after 2 attempts" in err and "Traceback" not in err
