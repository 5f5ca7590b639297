"""`covidct pacs watch|run`: analyse CT series in an Orthanc PACS and store DICOM SEG, SR and
secondary captures back into their studies (DICOMweb)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from covidct.commands.analyze import add_config_arguments, config_from_args

HELP = "analyse new CT series in an Orthanc PACS and store SEG, SR and captures back (DICOMweb)"
DEFAULT_STATE = Path("covidct-pacs-state.json")
PASSWORD_ENV = "COVIDCT_PACS_PASSWORD"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True,
                        help="the Orthanc root URL, e.g. http://localhost:8042")
    parser.add_argument("--dicomweb-root", default="/dicom-web",
                        help="DICOMweb path under --url (default: /dicom-web)")
    parser.add_argument("--user", help="HTTP Basic user name")
    parser.add_argument("--password", help=f"HTTP Basic password (or set ${PASSWORD_ENV}, "
                                           "which keeps it out of the process list)")
    parser.add_argument("--token-file", type=Path, metavar="FILE",
                        help="a file holding a bearer token (instead of --user/--password)")
    parser.add_argument("--state", type=Path, default=DEFAULT_STATE, metavar="FILE",
                        help=f"the worker's state file (default: {DEFAULT_STATE})")
    parser.add_argument("--models", type=Path, metavar="DIR",
                        help="folder of model weights + cards (default: the shipped models)")
    parser.add_argument("--work-dir", type=Path, metavar="DIR",
                        help="keep each retrieved series and its outputs here (default: a "
                             "temporary folder, deleted after each series)")
    parser.add_argument("--retries", type=int, default=5, metavar="N",
                        help="tries per PACS request before giving up (default: 5; waits "
                             "0.5, 1, 2, 4 ... s between them, at most 10 s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    add_config_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)
    watch = sub.add_parser("watch", help="follow Orthanc's changes feed and analyse each new "
                                         "stable axial CT series once",
                           description="Follow Orthanc's changes feed (/changes, StableSeries) "
                                       "from the state file's last change.")
    _common(watch)
    watch.add_argument("--poll-s", type=float, default=5.0, metavar="S",
                       help="seconds between polls when there is nothing new (default: 5)")
    watch.add_argument("--once", action="store_true",
                       help="stop when every change so far is handled (default: run forever)")
    watch.add_argument("--max-changes", type=int, metavar="N",
                       help="stop after handling N changes of the feed")
    watch.add_argument("--page-limit", type=int, default=100, metavar="N",
                       help="changes asked per request (default: 100)")
    run = sub.add_parser("run", help="analyse the axial CT series of one study now",
                         description="Analyse the axial CT series of one study now and store "
                                     "the results into it.")
    _common(run)
    run.add_argument("--study", required=True, metavar="UID", help="StudyInstanceUID")
    run.add_argument("--force", action="store_true",
                     help="analyse series the state file records as done (outputs already "
                          "in the PACS are not stored twice)")


def build_worker(args: argparse.Namespace):  # -> PacsWorker (imports kept lazy)
    from covidct.errors import InputError
    from covidct.pacs.client import Backoff, Credentials, PacsClient
    from covidct.pacs.outputs import OutputProducer
    from covidct.pacs.worker import PacsWorker, check_pacs

    if args.retries < 1:
        raise InputError(f"--retries {args.retries}: give at least 1.")
    password = args.password if args.password is not None else os.environ.get(PASSWORD_ENV)
    credentials = Credentials.from_options(args.user, password, args.token_file)
    client = PacsClient(args.url, credentials, dicomweb_root=args.dicomweb_root,
                        backoff=Backoff(attempts=args.retries))
    check_pacs(client)
    producer = OutputProducer(args.models, config_from_args(args))
    return PacsWorker(client, args.state, producer, work_dir=args.work_dir)


def run(args: argparse.Namespace) -> int:
    if not args.quiet:
        logging.getLogger("covidct.pacs").setLevel(logging.INFO)
        if not logging.getLogger().handlers:  # pragma: no cover - cli.main configures it
            logging.basicConfig()
    worker = build_worker(args)
    if args.pacs_command == "watch":
        summary = worker.watch(page_limit=args.page_limit, poll_s=args.poll_s, once=args.once,
                               max_changes=args.max_changes)
        counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.series.items()))
        print(f"handled {summary.changes} change(s); series: {counts or 'none'}; "
              f"last change {worker.state.last_seq}; state: {args.state}")
        return 0
    records = worker.run_study(args.study, force=args.force)
    failed = 0
    for series_uid, rec in records.items():
        print(f"{rec.status:8s} {series_uid}: {rec.reason}")
        failed += rec.status == "failed"
    if failed:
        print(f"covidct pacs run: {failed} series failed (reasons in {args.state})",
              file=sys.stderr)
    return 1 if failed else 0
