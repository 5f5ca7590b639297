"""Fuzz covidct's readers (DICOM, NIfTI, NRRD) by mutating real files with hypothesis.

Every input must end in a ``Volume`` or a ``CovidCTError``: never another exception, a
hang (``--timeout-s`` per case) or memory above 2 GB (the address-space limit is set to
the harness's own size plus 2 GiB, so a reader that tries to allocate more fails with
MemoryError, which counts as a crash).

Seeds are real files from shared/data/real (COPDGene 10002K, Chest Imaging Platform
licence) and shared/data/reported-inputs: one CT slice with and without the Part-10
preamble; the CT NIfTI cropped to 3 slices with its own header (.nii and .nii.gz);
the CT NRRD's own header with 3 slices (raw and gzip encoding). Mutations, drawn by
hypothesis: bit flips, byte sets, "interesting" integers (0, -1, 2^31-1, ...) written
at header offsets, insertions, deletions, duplications, truncation and, for NRRD
headers, header values replaced with hostile tokens.

    # short form (what tests/test_fuzz_readers.py runs)
    python benchmarks/fuzz_readers.py --examples 100
    # long form, one reader per process (same mutation space, seeded RNG, ~3x faster)
    nice -n 19 python benchmarks/fuzz_readers.py --reader dicom --examples 100000 \
        --engine random --seed 10 --json benchmarks/results/fuzz_readers_dicom.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from covidct.errors import CovidCTError  # noqa: E402
from covidct.io import load_volume  # noqa: E402
from covidct.volume import Volume  # noqa: E402


def _data_root() -> Path:
    env = os.environ.get("COVIDCT_REAL_DATA")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data" / "real",
                                                     Path("/work/shared/data/real")]:
        if candidate.is_dir():
            return candidate
    raise SystemExit("real CT fixtures not found (set COVIDCT_REAL_DATA)")


READERS = ("dicom", "nifti", "nrrd")
MEMORY_LIMIT_BYTES = 2 * 1024**3
INTERESTING = [0, 1, 2, 3, 7, 8, 16, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
               0x80000000, 0xFFFFFFFF, -1, -2, -128, -32768]
NRRD_TOKENS = [b"0", b"-1", b"1e309", b"nan", b"inf", b"4294967297", b"99999999999",
               b"(0,0,0)", b"(nan,0,0)", b"none", b"", b"64 64", b"64 64 3 1", b"64 64 0",
               b"1 1 1", b"gzip", b"raw", b"bzip2", b"hex", b"ascii", b"big", b"double",
               b"uchar", b"block", b"2", b"4", b"1", b"left-posterior-superior",
               b"(1,0,0) (0,1,0)", b"(1,0,0) (0,1,0) (0,0,0)"]


@dataclass(frozen=True)
class Seed:
    name: str
    reader: str
    suffix: str
    data: bytes


def seeds() -> list[Seed]:
    """Small real files (bytes) for each reader."""
    import nibabel as nib

    real = _data_root()
    copd = real / "cip-copdgene-10002K"
    out = [Seed("cip-slice-part10", "dicom", ".dcm", (copd / "ct-64Dicom" / "IMG0040.dcm")
                .read_bytes())]
    bare = real.parent / "reported-inputs" / "01-dicom-without-preamble" / "IMG0040"
    if bare.exists():
        out.append(Seed("cip-slice-no-preamble", "dicom", "", bare.read_bytes()))

    image = nib.load(str(copd / "cip_10002K_ct64.nii.gz"))
    crop = np.asanyarray(image.dataobj)[:, :, 38:41]
    small = nib.Nifti1Image(crop, image.affine, header=image.header.copy())
    nii = small.to_bytes()
    out.append(Seed("cip-ct-3-slices", "nifti", ".nii", nii))
    out.append(Seed("cip-ct-3-slices-gz", "nifti", ".nii.gz", gzip.compress(nii, mtime=0)))

    header, _, body = (copd / "ct-64.nrrd").read_bytes().partition(b"\n\n")
    volume = np.frombuffer(gzip.decompress(body), dtype="<i2").reshape(79, 64, 64)[38:41]
    lines = [line for line in header.split(b"\n")]
    lines = [b"sizes: 64 64 3" if line.startswith(b"sizes:") else line for line in lines]
    raw_header = b"\n".join(b"encoding: raw" if line.startswith(b"encoding:") else line
                            for line in lines)
    out.append(Seed("cip-ct-3-slices-raw", "nrrd", ".nrrd",
                    raw_header + b"\n\n" + volume.tobytes()))
    out.append(Seed("cip-ct-3-slices-gzip", "nrrd", ".nrrd",
                    b"\n".join(lines) + b"\n\n" + gzip.compress(volume.tobytes(), mtime=0)))
    return out


# --- mutations ------------------------------------------------------------------------

_positions = st.one_of(st.integers(0, 511), st.integers(0, 1 << 24))
_op = st.one_of(
    st.tuples(st.just("flip"), _positions, st.integers(0, 7)),
    st.tuples(st.just("set"), _positions, st.integers(0, 255)),
    st.tuples(st.just("int"), _positions, st.sampled_from([1, 2, 4, 8]),
              st.sampled_from(INTERESTING), st.booleans()),
    st.tuples(st.just("insert"), _positions, st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), _positions, st.integers(1, 256)),
    st.tuples(st.just("dup"), _positions, st.integers(1, 512)),
    st.tuples(st.just("truncate"), _positions),
    st.tuples(st.just("token"), st.integers(0, 40), st.sampled_from(NRRD_TOKENS)),
)
MUTATIONS = st.lists(_op, min_size=1, max_size=6)


def random_ops(rng: np.random.Generator) -> list[tuple]:
    """Operations from the same space as ``MUTATIONS``, drawn by a seeded RNG.

    The long form uses this ``--engine random``: hypothesis's engine costs about twice
    the reading itself per case, and coverage guidance is not what it adds here.
    """
    ops: list[tuple] = []
    for _ in range(int(rng.integers(1, 7))):
        pos = int(rng.integers(0, 512)) if rng.random() < 0.5 else int(rng.integers(0, 1 << 24))
        kind = int(rng.integers(0, 8))
        if kind == 0:
            ops.append(("flip", pos, int(rng.integers(0, 8))))
        elif kind == 1:
            ops.append(("set", pos, int(rng.integers(0, 256))))
        elif kind == 2:
            ops.append(("int", pos, int(rng.choice([1, 2, 4, 8])),
                        int(INTERESTING[int(rng.integers(0, len(INTERESTING)))]),
                        bool(rng.integers(0, 2))))
        elif kind == 3:
            ops.append(("insert", pos, rng.bytes(int(rng.integers(1, 65)))))
        elif kind == 4:
            ops.append(("delete", pos, int(rng.integers(1, 257))))
        elif kind == 5:
            ops.append(("dup", pos, int(rng.integers(1, 513))))
        elif kind == 6:
            ops.append(("truncate", pos))
        else:
            ops.append(("token", int(rng.integers(0, 41)),
                        NRRD_TOKENS[int(rng.integers(0, len(NRRD_TOKENS)))]))
    return ops


def mutate(data: bytes, ops: list[tuple]) -> bytes:
    """Apply hypothesis-drawn operations to ``data`` (positions wrap to its length)."""
    buf = bytearray(data)
    for op in ops:
        kind = op[0]
        n = max(len(buf), 1)
        if kind == "token":
            buf = bytearray(_replace_header_value(bytes(buf), op[1], op[2]))
            continue
        pos = op[1] % n
        if kind == "flip" and buf:
            buf[pos] ^= 1 << op[2]
        elif kind == "set" and buf:
            buf[pos] = op[2]
        elif kind == "int":
            _, _, width, value, big = op
            raw = (value % (1 << (8 * width))).to_bytes(width, "big" if big else "little")
            buf[pos:pos + width] = raw
        elif kind == "insert":
            buf[pos:pos] = op[2]
        elif kind == "delete":
            del buf[pos:pos + op[2]]
        elif kind == "dup":
            buf[pos:pos] = buf[pos:pos + op[2]]
        elif kind == "truncate":
            del buf[pos:]
    return bytes(buf)


def _replace_header_value(data: bytes, line: int, token: bytes) -> bytes:
    """Replace the value of header line ``line`` (NRRD 'key: value') with ``token``."""
    header, sep, body = data.partition(b"\n\n")
    if not sep:
        return data
    lines = header.split(b"\n")
    index = line % len(lines)
    key, colon, _ = lines[index].partition(b":")
    lines[index] = key + b": " + token if colon else token
    return b"\n".join(lines) + sep + body


# --- running one case ------------------------------------------------------------------


class Hang(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Hang()


@dataclass
class Tally:
    cases: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    crashes: dict[str, dict] = field(default_factory=dict)
    slowest_s: float = 0.0


def run_case(path: Path, data: bytes, timeout_s: float, tally: Tally, reader: str) -> str:
    """Load ``data`` from ``path``; returns 'volume', 'error' or a crash key."""
    path.write_bytes(data)
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        result = load_volume(path)
        outcome = "volume" if isinstance(result, Volume) else "not-a-volume"
    except CovidCTError:
        outcome = "error"
    except Hang:
        outcome = f"hang>{timeout_s}s"
        tally.crashes.setdefault(outcome, {"reader": reader, "message": "timed out",
                                           "input_hex_head": data[:64].hex(),
                                           "input_size": len(data), "traceback": ""})
    except Exception as exc:  # noqa: BLE001 - anything else is the finding
        frames = traceback.extract_tb(exc.__traceback__)
        where = frames[-1] if frames else None
        site = f"{Path(where.filename).name}:{where.lineno}" if where else "?"
        outcome = f"{type(exc).__name__} at {site}"
        if outcome not in tally.crashes:
            tally.crashes[outcome] = {
                "reader": reader,
                "message": str(exc)[:300],
                "input_hex_head": data[:64].hex(),
                "input_size": len(data),
                "traceback": "".join(traceback.format_exception(exc))[-2000:],
            }
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    tally.slowest_s = max(tally.slowest_s, time.perf_counter() - start)
    tally.cases[reader] += 1
    tally.outcomes[outcome if outcome in ("volume", "error") else "crash"] += 1
    return outcome


def _case(reader: str, pool: list[Seed], tmp: Path, examples: int, timeout_s: float,
          seed: int | None, tally: Tally, progress: Callable[[Tally], None] | None):
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              derandomize=seed is not None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(pool), MUTATIONS)
    def case(chosen: Seed, ops: list[tuple]) -> None:
        run_case(tmp / ("case" + chosen.suffix), mutate(chosen.data, ops), timeout_s, tally,
                 reader)
        if progress and tally.cases[reader] % 1000 == 0:
            progress(tally)

    return case


def _random_cases(reader: str, pool: list[Seed], tmp: Path, examples: int, timeout_s: float,
                  seed: int | None, tally: Tally,
                  progress: Callable[[Tally], None] | None) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(examples):
        chosen = pool[int(rng.integers(0, len(pool)))]
        run_case(tmp / ("case" + chosen.suffix), mutate(chosen.data, random_ops(rng)),
                 timeout_s, tally, reader)
        if progress and tally.cases[reader] % 1000 == 0:
            progress(tally)


def fuzz(readers: tuple[str, ...], examples: int, timeout_s: float = 10.0,
         seed: int | None = 0, progress: Callable[[Tally], None] | None = None,
         engine: str = "hypothesis") -> Tally:
    """Run ``examples`` mutated cases per reader; never raises on a crash (they are tallied).

    engine: "hypothesis" (cases drawn by hypothesis from ``MUTATIONS``) or "random" (the
    same mutation space drawn by a seeded numpy RNG, about 3x faster per case).
    """
    import logging
    import warnings

    logging.disable(logging.WARNING)  # the readers' warnings are expected, not findings
    warnings.simplefilter("ignore")
    tally = Tally()
    all_seeds = [s for s in seeds() if s.reader in readers]
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        with tempfile.TemporaryDirectory(prefix="covidct-fuzz-") as tmp:
            for reader in readers:
                pool = [s for s in all_seeds if s.reader == reader]
                if engine == "random":
                    _random_cases(reader, pool, Path(tmp), examples, timeout_s, seed, tally,
                                  progress)
                else:
                    _case(reader, pool, Path(tmp), examples, timeout_s, seed, tally,
                          progress)()
                for leftover in Path(tmp).iterdir():
                    leftover.unlink()
    finally:
        signal.signal(signal.SIGALRM, previous)
        logging.disable(logging.NOTSET)
    return tally


def limit_memory(extra_bytes: int = MEMORY_LIMIT_BYTES) -> int:
    """Cap the address space at the current size plus ``extra_bytes``; returns the cap."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[0])
    cap = pages * os.sysconf("SC_PAGE_SIZE") + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return cap


def summarize(paths: list[Path]) -> str:
    """A text table of the tallies written by ``--json`` runs (one line per run)."""
    lines = ["reader  cases  volume  CovidCTError  crash  hang  elapsed_s  peak_rss_mb  engine  "
             "command"]
    for path in paths:
        doc = json.loads(path.read_text())
        outcomes = doc["outcomes"]
        hangs = sum(1 for key in doc["crash_classes"] if key.startswith("hang"))
        cases = doc["cases"]  # outcomes are totals over the readers of one run
        for reader, count in [("+".join(cases), sum(cases.values()))]:
            lines.append(
                f"{reader}  {count}  {outcomes.get('volume', 0)}  {outcomes.get('error', 0)}  "
                f"{outcomes.get('crash', 0)}  {hangs}  {doc['elapsed_s']}  {doc['peak_rss_mb']}  "
                f"{doc.get('engine', 'hypothesis')}  {doc['command']}"
            )
        for key, info in doc["crash_classes"].items():
            lines.append(f"    crash class: {key} ({info['reader']}): {info['message'][:160]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reader", choices=READERS, action="append")
    parser.add_argument("--examples", type=int, default=100, help="cases per reader")
    parser.add_argument("--timeout-s", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0, help="-1: not derandomized")
    parser.add_argument("--json", type=Path, help="write the tally here (and every 1000)")
    parser.add_argument("--engine", choices=("hypothesis", "random"), default="hypothesis")
    parser.add_argument("--summarize", type=Path, nargs="+",
                        help="print a table of these --json tallies and exit")
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize), end="")
        return 0
    readers = tuple(args.reader or READERS)
    cap = limit_memory()
    start = time.time()

    def report(tally: Tally) -> dict:
        doc = {
            "command": " ".join(sys.argv),
            "readers": list(readers),
            "examples_requested_per_reader": args.examples,
            "engine": args.engine,
            "cases": dict(tally.cases),
            "outcomes": dict(tally.outcomes),
            "crash_classes": tally.crashes,
            "slowest_case_s": round(tally.slowest_s, 3),
            "address_space_cap_bytes": cap,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "elapsed_s": round(time.time() - start, 1),
        }
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(doc, indent=1))
        return doc

    tally = fuzz(readers, args.examples, args.timeout_s,
                 None if args.seed < 0 else args.seed, progress=report, engine=args.engine)
    doc = report(tally)
    print(json.dumps({k: v for k, v in doc.items() if k != "crash_classes"}, indent=1))
    for key, info in tally.crashes.items():
        print(f"CRASH {key} ({info['reader']}): {info['message']}")
    return 1 if tally.crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
