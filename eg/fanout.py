#!/usr/bin/env python3
"""Scatter/gather: split one task into many jobs, then combine their results.

    python3 eg/fanout.py [--chunks N]

Counting the words of a text: the text is cut into N chunks, one
"count_words" job per chunk goes out at once (scatter), and when the last
result is in they are added up (gather). Results can arrive in any order, so
each is stored under its chunk's index. Three workers in this process share
the jobs, as several machines would.

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import collections
import os
import sys

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))

TEXT = ("the quick brown fox jumps over the lazy dog " * 50).strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10)
    args = parser.parse_args()
    loop = ev.default_loop()
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    served_by = collections.Counter()

    def count_words_for(worker_no):
        # One function per worker, so we can see who did what.
        def count_words(job):
            served_by[worker_no] += 1
            return str(len(job.workload.split()))
        return count_words

    workers = []
    for n in range(3):
        w = Gearman(HOST, PORT, client_id=f"fanout-worker-{n}")
        w.register_function("count_words", count_words_for(n))
        w.work()
        workers.append(w)

    # Scatter: cut on word boundaries so no word is split between chunks.
    words = TEXT.split()
    size = -(-len(words) // args.chunks)   # ceiling division
    chunks = [" ".join(words[i:i + size]) for i in range(0, len(words), size)]

    client = Gearman(HOST, PORT)
    counts = [None] * len(chunks)
    failed = []

    def gather(index):
        def cb(result, err):
            if err:
                failed.append((index, err))
            else:
                counts[index] = int(result)
            if failed or None not in counts:
                loop.stop()          # all in (or one failed: give up early)
        return cb

    for index, chunk in enumerate(chunks):
        client.submit_job("count_words", chunk, gather(index), timeout=10)
    print(f"scattered {len(chunks)} chunks")
    loop.start()

    if failed:
        print(f"chunk {failed[0][0]} failed: {failed[0][1]}")
        return 1
    total = sum(counts)
    print(f"gathered: {total} words (expected {len(words)})")
    print("jobs per worker:", dict(sorted(served_by.items())))
    return 0 if total == len(words) else 1


if __name__ == "__main__":
    sys.exit(main())
