"""Fuzz the live API: schemathesis over the gateway's OpenAPI document (issue 11, #9).

Starts `myspinbot up` (status, ws-relay and the scripted test job function, as the tests
do) in a temporary data dir, or uses a running platform (`--url`, with `--token` or
MYSPINBOT_TOKEN), and runs the three passes of tests/fuzzing.py: coverage (boundary and
negative cases), fuzzing (valid and invalid generated requests) and stateful sequences
that follow the document's links. Prints a table per operation: requests, 5xx,
unreadable 4xx, statuses; exits 1 when any 5xx or unreadable 4xx was seen.

    python bench/fuzz_api.py                   # about 2500 requests
    python bench/fuzz_api.py --examples 2 --scenarios 2 --no-coverage   # smoke
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.fuzzing and tests.support

from tests.fuzzing import Fuzzer  # noqa: E402
from tests.support import RunningPlatform  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running platform (default: start one)")
    parser.add_argument("--token", default=os.environ.get("MYSPINBOT_TOKEN"))
    parser.add_argument("--examples", type=int, default=60, help="per operation and mode")
    parser.add_argument("--scenarios", type=int, default=100, help="stateful sequences")
    parser.add_argument("--steps", type=int, default=10, help="calls per sequence, at most")
    parser.add_argument("--seed", type=int, default=20261205)
    parser.add_argument(
        "--no-coverage", action="store_true", help="skip the coverage pass (~600 requests)"
    )
    args = parser.parse_args()

    platform = None
    headers: dict[str, str] = {}
    url = args.url
    if url is None:
        platform = RunningPlatform(Path(tempfile.mkdtemp(prefix="myspinbot-fuzz-"))).start()
        url = platform.url
        headers = platform.headers  # the owner's token (an admin)
    elif args.token:
        headers = {"Authorization": f"Bearer {args.token}"}
    try:
        started = time.monotonic()
        fuzzer = Fuzzer(url, headers, seed=args.seed)
        report = fuzzer.run(
            examples=args.examples,
            scenarios=args.scenarios,
            steps=args.steps,
            coverage=not args.no_coverage,
        )
        elapsed = time.monotonic() - started
    finally:
        if platform is not None:
            platform.stop()
    print(report.table())
    print(
        f"\n{report.requests} requests in {elapsed:.0f} s (seed {args.seed}); "
        f"5xx: {report.server_errors}; unreadable 4xx: {report.unreadable}; stateful "
        f"batches Hypothesis cut short: {report.batches_cut}"
    )
    for failure in report.failures:
        print(failure)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
