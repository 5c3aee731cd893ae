"""Python peers for the circuits benchmark suite (called by benches/suite/python.rs).

Usage: peers.py rt SIZE N | tp submit N | tp map N | start
Prints one JSON object. Contenders that cannot run report null and a reason under "why".
"""
import json
import multiprocessing as mp
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def echo(b):
    return b


def inc(x):
    return x + 1


def p50(xs):
    return statistics.median(xs)


def rt(size, n):
    payload = b"\x07" * size
    out, why = {}, {}
    with ProcessPoolExecutor(1) as ex:
        ex.submit(echo, payload).result()
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            ex.submit(echo, payload).result()
            ts.append((time.perf_counter() - t) * 1e6)
        out["python ProcessPoolExecutor"] = p50(ts)
    with mp.Pool(1) as pool:
        pool.apply(echo, (payload,))
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            pool.apply(echo, (payload,))
            ts.append((time.perf_counter() - t) * 1e6)
        out["python multiprocessing Pool.apply"] = p50(ts)
    name = "python circuits Worker(process=True)"
    try:
        out[name] = circuits_rt(payload, min(n, 5))
    except Exception as e:  # not installed, or broken on this Python
        out[name] = None
        why[name] = f"{type(e).__name__}: {e}"
    return {"values": out, "why": why}


def circuits_rt(payload, n):
    from circuits import Manager, Worker, task

    m = Manager() + Worker(process=True)
    m.start()
    try:
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            v = m.fire(task(echo, payload))
            deadline = t + 10
            while not v.result:
                if time.perf_counter() > deadline:
                    raise TimeoutError("no result within 10 s")
                time.sleep(0.0005)
            ts.append((time.perf_counter() - t) * 1e6)
        return p50(ts)
    finally:
        m.stop()


def tp(kind, n):
    xs = range(n)
    with ProcessPoolExecutor(2) if kind == "submit" else mp.Pool(2) as ex:
        if kind == "submit":
            ex.submit(inc, 0).result()
            t = time.perf_counter()
            futs = [ex.submit(inc, x) for x in xs]
            for f in futs:
                f.result()
        else:
            ex.apply(inc, (0,))
            t = time.perf_counter()
            ex.map(inc, xs, chunksize=256)
        return {"values": {kind: n / (time.perf_counter() - t)}, "why": {}}


def start():
    t = time.perf_counter()
    with ProcessPoolExecutor(2) as ex:
        ex.submit(inc, 0).result()
        ms = (time.perf_counter() - t) * 1e3
    return {"values": {"start": ms}, "why": {}}


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "rt":
        r = rt(int(a[1]), int(a[2]))
    elif a[0] == "tp":
        r = tp(a[1], int(a[2]))
    else:
        r = start()
    print(json.dumps(r))
