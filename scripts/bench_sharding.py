"""Benchmark: TraceLoom's scheduling against Playwright's own ``--shard``.

    .venv/bin/python scripts/bench_sharding.py            # the full table
    .venv/bin/python scripts/bench_sharding.py --hosts 2  # one host count
    .venv/bin/python scripts/bench_sharding.py --scale-only

It builds synthetic suites (spec files whose tests wait for skewed times, no
browser needed; one variant with a web server that takes seconds to start),
runs each on N local hosts through TraceLoom (after one run to learn the
durations) and with ``playwright test --shard=i/N`` as N processes on this
machine, each in its own network namespace like a local host. It prints the
makespan of each, the lower bound ``max(total / N, longest file)``, their
ratio, and the cost of one Playwright start. Then a scale check of the
planner alone: 2,000 files over 200 simulated hosts.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from demo import TRACELOOM, call, free_port, server_env, wait_healthy  # noqa: E402

from controlplane.engine.workqueue import WorkItem, WorkQueue  # noqa: E402
from controlplane.fleet.local import detect_netns  # noqa: E402
from controlplane.fleet.localhost_server import netns_prefix  # noqa: E402

FINISHED = {"passed", "failed", "errored", "cancelled", "timed_out"}
SLOW_SERVER_S = 4.0


def durations(seed: int = 7, files: int = 40) -> dict[str, float]:
    """Skewed file durations: a cluster of slow files, many quick ones.

    The slow ones sit together in name order (a slow feature folder), which
    is what makes a count-based split unlucky.
    """
    rng = random.Random(seed)  # noqa: S311 (reproducible test data, not secrets)
    result = {}
    for n in range(files):
        slow = 8 <= n < 16
        seconds = rng.uniform(3.0, 6.0) if slow else rng.uniform(0.2, 1.2)
        result[f"tests/f{n:02d}.spec.ts"] = round(seconds, 2)
    return result


def spec_text(seconds: float) -> str:
    parts = [round(seconds * share, 3) for share in (0.5, 0.3, 0.2)]
    lines = ["import { test } from '@playwright/test';"]
    for i, part in enumerate(parts):
        wait = f"await new Promise((r) => setTimeout(r, {int(part * 1000)}));"
        lines.append(f"test('t{i}', async () => {{ {wait} }});")
    return "\n".join(lines) + "\n"


def config_text(slow_server: bool) -> str:
    server = ""
    if slow_server:
        server = (
            "  webServer: { command: 'node server.mjs', url: 'http://127.0.0.1:4999/',"
            " reuseExistingServer: false, timeout: 30_000 },\n"
        )
    return (
        "import { defineConfig } from '@playwright/test';\n"
        "export default defineConfig({\n  testDir: 'tests',\n  workers: 1,\n"
        f"{server}}});\n"
    )


SERVER = f"""\
import http from 'node:http';
setTimeout(() => {{
  http.createServer((req, res) => res.end('ok')).listen(4999, '127.0.0.1');
}}, {int(SLOW_SERVER_S * 1000)});
"""


def make_suite(target: Path, files: dict[str, float], *, slow_server: bool) -> Path:
    example = ROOT / "examples" / "suite"
    target.mkdir(parents=True)
    shutil.copy(example / "package.json", target)
    shutil.copy(example / "package-lock.json", target)
    (target / "playwright.config.ts").write_text(config_text(slow_server))
    (target / "server.mjs").write_text(SERVER)
    for name, seconds in files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(spec_text(seconds))
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@example.invalid",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@example.invalid",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "s"]):
        subprocess.run(["git", *args], cwd=target, env=env, check=True)
    return target


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def traceloom_run(base: str, key: str, repo: Path, hosts: int) -> dict[str, Any]:
    posted = time.time()
    body = {
        "testSource": {"type": "git", "gitRepo": str(repo), "gitBranch": "main"},
        "testPattern": "tests/**/*.spec.ts",
        "serverCount": hosts,
    }
    run = call(f"{base}/api/runs", key, body)
    while run["status"] not in FINISHED:
        time.sleep(0.3)
        run = call(f"{base}/api/runs/{run['id']}", key)
    verdict_s = time.time() - posted
    busy = [s for s in run["shards"] if s["startedAt"] and s["finishedAt"]]
    if run["status"] != "passed" or not busy:
        # A makespan of a run that did not pass measures nothing.
        sys.exit(
            f"bench-sharding: run {run['id']} on {hosts} hosts ended "
            f"{run['status']}: {run.get('reason')}"
        )
    start = min(_ts(s["startedAt"]) for s in busy)
    end = max(_ts(s["finishedAt"]) for s in busy)
    return {"status": run["status"], "makespan": end - start, "verdict": verdict_s}


def playwright(suite: Path, netns: str, *args: str) -> subprocess.Popen[bytes]:
    """``playwright test ARGS`` in the suite, in a namespace of its own."""
    return subprocess.Popen(
        [*netns_prefix(netns), "sh", "-c",
         'ip link set lo up 2>/dev/null; exec "$0" "$@"',
         "./node_modules/.bin/playwright", "test", *args, "--reporter=dot"],
        cwd=suite, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "CI": "1"},
    )  # fmt: skip


def playwright_shards(suite: Path, hosts: int, netns: str) -> float:
    """Makespan of N concurrent ``playwright test --shard=i/N`` processes."""
    started = time.monotonic()
    procs = [
        playwright(suite, netns, f"--shard={i}/{hosts}") for i in range(1, hosts + 1)
    ]
    for proc in procs:
        proc.wait()
    return time.monotonic() - started


def start_cost(suite: Path, netns: str, at_once: int = 1) -> float:
    """Seconds of a Playwright start: a run of one trivial test.

    With ``at_once`` > 1, that many start together (each in its own
    namespace, as hosts do) and the time is until the last has finished:
    what each of N hosts pays when they share this machine's cores.
    """
    trivial = suite / "tests" / "zz-trivial.spec.ts"
    trivial.write_text(
        "import { test } from '@playwright/test';\ntest('t', () => {});\n"
    )
    samples = []
    for _ in range(3):
        began = time.monotonic()
        procs = [
            playwright(suite, netns, "tests/zz-trivial.spec.ts") for _ in range(at_once)
        ]
        for proc in procs:
            proc.wait()
        samples.append(time.monotonic() - began)
    trivial.unlink()
    return statistics.median(samples)


def per_test_cost(
    suite: Path, netns: str, files: dict[str, float], start: float
) -> float:
    """Seconds Playwright itself spends per test, beyond the tests' own waits.

    The suite's files again with every wait at zero, run by one Playwright
    with one worker (median of 3), less one start, over the test count. A
    scheduler cannot avoid it, --shard pays it too, and the bound leaves it
    out: at 2 hosts it is a share of the 10 % the goal allows.
    """
    zero = suite / "tests" / "zero"
    zero.mkdir()
    for name in files:
        (zero / Path(name).name).write_text(spec_text(0.0))
    samples = []
    for _ in range(3):
        began = time.monotonic()
        playwright(suite, netns, "tests/zero/").wait()
        samples.append(time.monotonic() - began)
    shutil.rmtree(zero)
    tests = 3 * len(files)
    return max(statistics.median(samples) - start, 0.0) / tests


def bench_suite(
    label: str, slow_server: bool, hosts_list: list[int], tmp: Path, netns: str
) -> list[dict[str, Any]]:
    files = durations()
    repo = make_suite(tmp / f"repo-{label}", files, slow_server=slow_server)
    local = tmp / f"local-{label}"
    shutil.copytree(repo, local, ignore=shutil.ignore_patterns(".git"))
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
        cwd=local, check=True, capture_output=True,
        env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"},
    )  # fmt: skip
    overhead = start_cost(local, netns)
    per_test = per_test_cost(local, netns, files, overhead)
    total = sum(files.values())
    longest = max(files.values())

    data_dir = tmp / f"data-{label}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp / f"server-{label}.log").open("wb")
    server = subprocess.Popen(
        [*TRACELOOM, "serve", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=log, stderr=log,
        # The tests open no page, but a host must have the suite's browser
        # for its projects to run at all (see Browsers).
        env=server_env(TRACELOOM_LOCAL_MAX_HOSTS="8", TRACELOOM_MAX_SERVER_COUNT="8"),
    )  # fmt: skip
    rows = []
    try:
        wait_healthy(base, server)
        created = subprocess.run(
            [*TRACELOOM, "keys", "create", "--name", "b", "--data-dir", str(data_dir)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        key = created.stdout.split()[-1]
        for hosts in hosts_list:
            traceloom_run(base, key, repo, hosts)  # learn the durations
            ours = traceloom_run(base, key, repo, hosts)
            theirs = playwright_shards(local, hosts, netns)
            together = start_cost(local, netns, hosts)
            bound = max(total / hosts, longest)
            # The bound with Playwright's own time per test added (3 a file).
            floor = max((total + 3 * len(files) * per_test) / hosts,
                        longest + 3 * per_test)  # fmt: skip
            rows.append(
                {
                    "suite": label,
                    "hosts": hosts,
                    "traceloom": ours["makespan"],
                    "verdict": ours["verdict"],
                    "status": ours["status"],
                    "shard": theirs,
                    "bound": bound,
                    "start": overhead,
                    "start_n": together,
                    "per_test": per_test,
                    "floor": floor,
                }
            )
            print_row(rows[-1])
    finally:
        server.terminate()
        server.wait(60)
        log.close()
    return rows


HEADER = (
    f"{'suite':<15}{'hosts':>6}{'TraceLoom':>11}{'--shard':>9}{'bound':>8}"
    f"{'TL/bound':>10}{'shard/bound':>12}{'start':>7}{'target':>8}  met"
    f"{'start@N':>9}{'target@N':>10}  met@N{'pw/test':>9}{'floor':>7}"
    f"{'TL/floor':>10}{'shard/floor':>13}"
)
NOTE = """
start:    one Playwright start alone (a run of one trivial test), median of 3
target:   1.10 x bound + start (the goal)
start@N:  N such starts at once, one per host, as the N hosts of a run start
          together on this machine's cores (--shard pays it as well)
target@N: 1.10 x bound + start@N
pw/test:  Playwright's own time per test beyond the test's wait (a run of the
          suite with every wait at zero, less one start, over its tests)
floor:    the bound with pw/test added to every test; TL/floor and
          shard/floor compare both with it plus start@N
"""


def print_row(row: dict[str, Any]) -> None:
    target = 1.10 * row["bound"] + row["start"]
    target_n = 1.10 * row["bound"] + row["start_n"]
    print(
        f"{row['suite']:<15}{row['hosts']:>6}{row['traceloom']:>10.1f}s"
        f"{row['shard']:>8.1f}s{row['bound']:>7.1f}s"
        f"{row['traceloom'] / row['bound']:>10.2f}{row['shard'] / row['bound']:>12.2f}"
        f"{row['start']:>6.1f}s{target:>7.1f}s  "
        f"{'yes' if row['traceloom'] <= target else 'NO ':<3}"
        f"{row['start_n']:>8.1f}s{target_n:>9.1f}s  "
        f"{'yes' if row['traceloom'] <= target_n else 'NO ':<5}"
        f"{row['per_test'] * 1000:>7.0f}ms{row['floor']:>6.1f}s"
        f"{row['traceloom'] / (row['floor'] + row['start_n']):>10.2f}"
        f"{row['shard'] / (row['floor'] + row['start_n']):>13.2f}"
        f"{'' if row['status'] == 'passed' else ' (run ' + row['status'] + ')'}",
        flush=True,
    )


def scale_check(files: int = 2000, hosts: int = 200, seed: int = 3) -> None:
    """Plan 2,000 files over 200 simulated hosts; simulate with noisy times."""
    rng = random.Random(seed)  # noqa: S311 (reproducible test data, not secrets)
    estimates = [rng.lognormvariate(0.0, 0.6) for _ in range(files)]
    items = [
        WorkItem(file=f"tests/f{i:04d}.spec.ts", selectors=(f"f{i}",), cost_s=c)
        for i, c in enumerate(estimates)
    ]
    actual = {i.file: i.cost_s * rng.lognormvariate(0.0, 0.3) for i in items}
    start_s = 0.5

    tracemalloc.start()
    began = time.perf_counter()
    queue = WorkQueue(items, hosts=hosts, start_cost_s=start_s)
    firsts = queue.first_batches()
    plan_ms = (time.perf_counter() - began) * 1000
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # Event simulation: each host runs its batch, then asks the queue again.
    clock = [start_s + sum(actual[i.file] for i in b) if b else 0.0 for b in firsts]
    batches = sum(1 for b in firsts if b)
    while queue.pending:
        host = min(range(hosts), key=clock.__getitem__)
        busy = sum(1 for c in clock if c > clock[host])
        batch = queue.next_batch(busy)
        clock[host] += start_s + sum(actual[i.file] for i in batch)
        batches += 1
    static = WorkQueue(items, hosts=hosts, start_cost_s=1e9).first_batches()
    static_span = max(start_s + sum(actual[i.file] for i in b) for b in static)
    total = sum(actual.values())
    bound = max(total / hosts, max(actual.values())) + start_s
    print(
        f"\nscale: {files} files over {hosts} simulated hosts:"
        f" plan in {plan_ms:.1f} ms,"
        f" peak {peak / 1024:.0f} KiB for the plan;"
        f" makespan {max(clock):.1f}s with the dynamic tail ({batches} starts)"
        f" vs {static_span:.1f}s static, bound {bound:.1f}s"
        f" (ratio {max(clock) / bound:.3f} vs {static_span / bound:.3f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--scale-only", action="store_true")
    args = parser.parse_args()
    if not args.scale_only:
        netns = detect_netns()
        if netns == "off":
            print("bench: needs network namespaces (root or user namespaces)")
            return 2
        with tempfile.TemporaryDirectory() as tmp:
            print(HEADER)
            for label, slow in (("skewed", False), ("skewed+server", True)):
                bench_suite(label, slow, args.hosts, Path(tmp), netns)
            print(NOTE, end="")
    scale_check()
    return 0


if __name__ == "__main__":
    sys.exit(main())
