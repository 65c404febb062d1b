#!/usr/bin/env python3
"""Structured payloads: send and receive JSON.

    python3 eg/json_payload.py

Gearman moves bytes and knows nothing of their format; the two sides agree
on one. Here both speak JSON: the client sends an order as a JSON object,
the worker decodes it, prices it and answers with a JSON object. A payload
the worker cannot use gets an answer with an "error" field, so the client
learns why (a WORK_FAIL would only say "job failed").

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import json
import os
import sys

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))

PRICES = {"apple": 0.5, "pear": 0.75}


def price_order(job):
    try:
        order = json.loads(job.workload)             # bytes in: json takes them as is
        total = sum(PRICES[item] * qty for item, qty in order["items"].items())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return json.dumps({"error": f"{type(exc).__name__}: {exc}"})
    return json.dumps({"customer": order["customer"], "total": round(total, 2)})


def main():
    loop = ev.default_loop()
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    worker = Gearman(HOST, PORT)
    worker.register_function("price_order", price_order)
    worker.work()

    client = Gearman(HOST, PORT)
    orders = [
        {"customer": "ada", "items": {"apple": 4, "pear": 2}},
        {"customer": "bob", "items": {"banana": 1}},        # unknown item
    ]
    replies = []

    def on_reply(result, err):
        if err:
            replies.append({"error": err})
        else:
            replies.append(json.loads(result))            # bytes back: decode them
        print("reply:", replies[-1])
        if len(replies) == len(orders) + 1:
            loop.stop()

    for order in orders:
        client.submit_job("price_order", json.dumps(order), on_reply, timeout=10)
    client.submit_job("price_order", b"not json", on_reply, timeout=10)
    loop.start()
    return 0 if replies[0] == {"customer": "ada", "total": 3.5} else 1


if __name__ == "__main__":
    sys.exit(main())
