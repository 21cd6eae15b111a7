#!/usr/bin/env python3
"""How idfzip processes share a machine: compress time of one image in one process alone, then
in N processes at once (as `xargs -P`, shell loops with `&` or shards on one machine do).

Each process imports idfzip (which sets the thread policy), compresses the image once to warm
up, waits for a common start time, then times ``--repeats`` compressions; the median of each
process is printed.

    python scripts/benchmark_concurrency.py ../shared/data/kodak/kodim01.png
    python scripts/benchmark_concurrency.py IMG --procs 1 2 4 --env OMP_WAIT_POLICY=ACTIVE
    python scripts/benchmark_concurrency.py IMG --threads 4      # torch threads per process
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def worker(args) -> None:
    import idfzip  # first: it sets the thread policy only while torch is not yet loaded
    import torch
    from PIL import Image
    if args.threads:
        torch.set_num_threads(args.threads)
    image = Image.open(args.image)
    image.load()
    idfzip.compress(image, args.model)  # loads the model, warms the caches
    time.sleep(max(0.0, args.start_at - time.time()))
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        idfzip.compress(image, args.model)
        times.append(time.perf_counter() - t)
    print(json.dumps({"threads": torch.get_num_threads(), "times": times}))


def measure(args, procs: int) -> list[dict]:
    env = dict(os.environ)
    env.update(kv.split("=", 1) for kv in args.env)
    start_at = time.time() + args.settle
    cmd = [sys.executable, __file__, args.image, "--worker", "--start-at", str(start_at),
           "--repeats", str(args.repeats), "--model", args.model,
           "--threads", str(args.threads or 0)]
    running = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
               for _ in range(procs)]
    return [json.loads(p.communicate()[0]) for p in running]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("image")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="photo")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per process (default: idfzip's choice)")
    parser.add_argument("--env", nargs="*", default=[], metavar="KEY=VALUE",
                        help="environment of the processes, e.g. OMP_WAIT_POLICY=ACTIVE")
    parser.add_argument("--settle", type=float, default=8.0,
                        help="seconds allowed for every process to import and warm up")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    label = " ".join(args.env) or "default environment"
    for procs in args.procs:
        results = measure(args, procs)
        medians = [statistics.median(r["times"]) for r in results]
        print(f"{label}, threads {results[0]['threads']}: {procs} process(es) at once: "
              + ", ".join(f"{m:.2f}" for m in medians) + " s per compression", flush=True)


if __name__ == "__main__":
    main()
