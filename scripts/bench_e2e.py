"""Time the main job: POST to first test, and POST to verdict, on N hosts.

    .venv/bin/python scripts/bench_e2e.py --hosts 1 3 --repeat 3

One control plane serves every run, so after the first run the dependency
cache is warm (as it is in steady use); the first run of each session is
reported apart as the cold start. Medians are printed, since this machine
is shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import (
    TRACELOOM,
    call,
    free_port,
    server_env,
    suite_repository,
    wait_healthy,
)

FINISHED = {"passed", "failed", "errored", "cancelled", "timed_out"}


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def one_run(base: str, key: str, repo: Path, hosts: int) -> dict[str, Any]:
    posted = time.time()
    created = call(
        f"{base}/api/runs",
        key,
        {
            "testSource": {"type": "git", "gitRepo": str(repo), "gitBranch": "main"},
            "testPattern": "tests/**/*.spec.ts",
            "serverCount": hosts,
            "name": f"bench {hosts} hosts",
        },
    )
    while True:
        run = call(f"{base}/api/runs/{created['id']}", key)
        if run["status"] in FINISHED:
            break
        time.sleep(0.25)
    done = time.time()
    if run["status"] not in ("passed", "failed"):
        raise SystemExit(f"run {run['id']} ended {run['status']}: {run['reason']}")
    return {
        "status": run["status"],
        "first_test_s": _ts(run["firstTestAt"]) - posted
        if run["firstTestAt"]
        else None,
        "wall_s": done - posted,
        "counts": run["counts"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [*TRACELOOM, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            env=server_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_healthy(base, server)
            key = subprocess.run(
                [
                    *TRACELOOM,
                    "keys",
                    "create",
                    "--name",
                    "bench",
                    "--data-dir",
                    str(data_dir),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
            repo = suite_repository(Path(tmp) / "suite")
            cold = one_run(base, key, repo, 1)
            print(
                f"cold start (empty dependency cache), 1 host: first test after"
                f" {cold['first_test_s']:.2f}s, verdict after {cold['wall_s']:.1f}s"
            )
            print(
                f"{'hosts':>5} {'runs':>4} {'POST->first test (median)':>26}"
                f" {'POST->verdict (median)':>23} {'min':>6} {'max':>6}"
            )
            for hosts in args.hosts:
                runs = [one_run(base, key, repo, hosts) for _ in range(args.repeat)]
                firsts = [
                    r["first_test_s"] for r in runs if r["first_test_s"] is not None
                ]
                walls = [r["wall_s"] for r in runs]
                statuses = sorted({r["status"] for r in runs})
                print(
                    f"{hosts:>5} {len(runs):>4} {statistics.median(firsts):>25.2f}s"
                    f" {statistics.median(walls):>22.1f}s {min(walls):>5.1f}s"
                    f" {max(walls):>5.1f}s   statuses: {statuses}"
                )
        finally:
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
