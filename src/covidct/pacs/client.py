"""HTTP to the PACS: Orthanc's REST API for the changes feed, DICOMweb (dicomweb-client) for
everything DICOM: QIDO-RS to search, WADO-RS to retrieve, STOW-RS to store (DICOM PS3.18).

Every request goes through one retry loop: a refused connection, a timeout, HTTP 408, 429 or
5xx is retried with exponential backoff (bounded: ``Backoff.attempts`` tries); HTTP 401/403
(wrong credentials) and other 4xx answers are not retried and raise at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from pydicom.dataset import Dataset

from covidct.errors import InputError, PacsError

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class PacsAuthError(PacsError):
    """The PACS refused the credentials (HTTP 401 / 403)."""


class PacsNotFound(PacsError):
    """The PACS has no such resource (HTTP 404)."""


class PacsUnavailable(PacsError):
    """The PACS did not answer, or kept failing, after every retry."""


@dataclass(frozen=True)
class Credentials:
    """HTTP Basic (user, password) or a bearer token; all None: no authentication."""

    user: str | None = None
    password: str | None = None
    token: str | None = None

    @classmethod
    def from_options(cls, user: str | None, password: str | None,
                     token_file: Path | None) -> Credentials:
        """From the command-line options; raises InputError on a bad combination."""
        if token_file is not None and (user or password):
            raise InputError("Give either --user/--password or --token-file, not both.")
        if token_file is not None:
            try:
                token = token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise InputError(f"Cannot read the token file {token_file} ({exc}).") from exc
            if not token:
                raise InputError(f"The token file {token_file} is empty; it should hold the "
                                 "bearer token on one line.")
            return cls(token=token)
        if (user is None) != (password is None):
            raise InputError("--user and --password go together; give both (or neither, for "
                             "a PACS without authentication).")
        return cls(user=user, password=password)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: waits base_s, base_s*factor, ... (at most max_s), attempts tries."""

    attempts: int = 5
    base_s: float = 0.5
    factor: float = 2.0
    max_s: float = 10.0

    def delay_s(self, failed: int) -> float:
        """The wait after the ``failed``-th consecutive failure (1-based)."""
        return min(self.max_s, self.base_s * self.factor ** (failed - 1))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        r = exc.response
        return f"HTTP {r.status_code} {r.reason} from {r.request.method if r.request else ''} " \
               f"{r.url}".replace("  ", " ")
    return f"{type(exc).__name__}: {exc}"


class PacsClient:
    """One PACS (an Orthanc with its DICOMweb plugin) at ``url`` (e.g. http://host:8042).

    ``dicomweb_root``: the DICOMweb path under ``url`` (Orthanc's default "/dicom-web").
    ``sleep`` is injectable so the backoff is testable without waiting.
    """

    def __init__(self, url: str, credentials: Credentials = Credentials(),  # noqa: B008
                 *, dicomweb_root: str = "/dicom-web", backoff: Backoff = Backoff(),  # noqa: B008
                 timeout_s: float = 120.0, sleep: Callable[[float], None] = time.sleep) -> None:
        from dicomweb_client.api import DICOMwebClient

        if not url.startswith(("http://", "https://")):
            raise InputError(f"--url {url!r} is not an HTTP(S) URL; give the PACS root, "
                             "e.g. http://localhost:8042")
        self.url = url.rstrip("/")
        self.backoff = backoff
        self.timeout_s = timeout_s
        self._sleep = sleep
        self.session = requests.Session()
        if credentials.token:
            self.session.headers["Authorization"] = f"Bearer {credentials.token}"
        elif credentials.user is not None:
            self.session.auth = (credentials.user, credentials.password or "")
        self.dicomweb = DICOMwebClient(url=self.url + "/" + dicomweb_root.strip("/"),
                                       session=self.session)
        self.dicomweb.set_http_retry_params(retry=False)  # one retry loop: ours

    # -- the retry loop -----------------------------------------------------------------
    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with retries; ``what`` names the request in errors."""
        failed = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in (401, 403):
                    raise PacsAuthError(
                        f"The PACS at {self.url} refused the credentials (HTTP {status}) while "
                        f"trying to {what}. Check --user/--password (or --token-file) and that "
                        "this user may use the REST and DICOMweb APIs.") from None
                if status == 404:
                    raise PacsNotFound(f"The PACS at {self.url} has no such resource: {what} "
                                       f"({_describe(exc)}).") from None
                if status not in RETRIED_STATUSES:
                    raise PacsError(f"The PACS at {self.url} refused to {what}: "
                                    f"{_describe(exc)}.") from None
                error: BaseException = exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                error = exc
            failed += 1
            if failed >= self.backoff.attempts:
                raise PacsUnavailable(
                    f"The PACS at {self.url} could not {what} after {failed} attempts "
                    f"(last: {_describe(error)}). Check that it is running and reachable, "
                    "then start the worker again: it resumes where it stopped.") from None
            wait = self.backoff.delay_s(failed)
            log.warning("PACS request failed (%s: %s); retry %d/%d in %.1f s", what,
                        _describe(error), failed, self.backoff.attempts - 1, wait)
            self._sleep(wait)

    # -- Orthanc REST -------------------------------------------------------------------
    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``url + path`` (Orthanc's REST API) and decode its JSON answer."""
        def get() -> Any:
            answer = self.session.get(self.url + path, params=params, timeout=self.timeout_s)
            answer.raise_for_status()
            return answer.json()
        return self.call(f"read {path}", get)

    def check(self) -> dict[str, Any]:
        """GET /system: reachable, and the credentials accepted (else PacsError)."""
        return self.get_json("/system")

    # -- DICOMweb -----------------------------------------------------------------------
    def search_series(self, study_uid: str) -> list[dict[str, Any]]:
        """QIDO-RS: the series of one study (DICOM JSON, PS3.18 F.2)."""
        return self.call(f"search the series of study {study_uid}",
                         self.dicomweb.search_for_series, study_instance_uid=study_uid,
                         fields=["Modality", "SeriesDescription", "SeriesNumber"])

    def search_instances(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """QIDO-RS: the instances of one series (SOPInstanceUID, SOPClassUID)."""
        return self.call(f"search the instances of series {series_uid}",
                         self.dicomweb.search_for_instances, study_instance_uid=study_uid,
                         series_instance_uid=series_uid, get_remaining=True)

    def series_metadata(self, study_uid: str, series_uid: str) -> list[dict[str, Any]]:
        """WADO-RS metadata: every instance's attributes without pixel data."""
        return self.call(f"read the metadata of series {series_uid}",
                         self.dicomweb.retrieve_series_metadata, study_instance_uid=study_uid,
                         series_instance_uid=series_uid)

    def retrieve_series(self, study_uid: str, series_uid: str, folder: Path) -> list[Path]:
        """WADO-RS: every instance of one series, written one by one into ``folder`` as
        NNNNN.dcm as they arrive (a retry starts over); returns the paths."""
        def fetch() -> list[Path]:
            paths = []
            for n, ds in enumerate(self.dicomweb.iter_series(
                    study_instance_uid=study_uid, series_instance_uid=series_uid), start=1):
                path = folder / f"{n:05d}.dcm"
                ds.save_as(path, enforce_file_format=True)
                paths.append(path)
            return paths

        folder.mkdir(parents=True, exist_ok=True)
        return self.call(f"retrieve series {series_uid}", fetch)

    def store(self, datasets: Sequence[Dataset], study_uid: str) -> list[str]:
        """STOW-RS into ``study_uid``; returns the stored SOPInstanceUIDs.

        Raises PacsError when the PACS reports any instance as failed."""
        if not datasets:
            return []
        answer = self.call(f"store {len(datasets)} instance(s) into study {study_uid}",
                           self.dicomweb.store_instances, datasets=list(datasets),
                           study_instance_uid=study_uid)
        failed = [str(item.get("ReferencedSOPInstanceUID", "?"))
                  for item in getattr(answer, "FailedSOPSequence", [])]
        if failed:
            raise PacsError(f"The PACS at {self.url} refused to store {len(failed)} of "
                            f"{len(datasets)} instance(s) into study {study_uid}: {failed}.")
        return [str(ds.SOPInstanceUID) for ds in datasets]
