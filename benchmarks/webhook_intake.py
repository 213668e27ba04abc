"""Webhook intake through gunicorn on PostgreSQL, against a trivial view on the same server.

    .venv/bin/python benchmarks/webhook_intake.py [--requests 3000] [--concurrency 16]

Starts gunicorn (production settings, PostgreSQL, Redis) and a Celery worker, sends N GETs to
/livez/ (a view that touches nothing) and N signed deliveries to /webhooks/recurrente/ with 16
concurrent senders, then waits for the worker and checks every delivery was stored once and
processed exactly once. Prints throughput of both, their ratio, and p50/p99 latencies.
Targets (DESIGN "Performance"): intake throughput >= 0.5 x trivial view; p99 < 50 ms.
"""

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid

import requests
from _common import PYTHON, ROOT, WEBHOOK_SECRET, fresh_database, manage, percentile, production_env, setup_django

PORT = 8765


def signed_deliveries(count: int) -> list[tuple[bytes, dict]]:
    from webmagic.webhook_signing import signed_headers

    deliveries = []
    for _ in range(count):
        # A decline for a checkout we do not know: verified, stored, processed (ignored) once.
        body = json.dumps({
            "id": f"pa_{uuid.uuid4().hex[:10]}", "event_type": "payment_intent.failed", "api_version": "2024-04-24",
            "live_mode": False, "checkout": {"id": f"ch_{uuid.uuid4().hex[:16]}"},
            "failure_reason": "Tu banco ha rechazado la transacción.", "amount_in_cents": 49500, "currency": "USD",
        }).encode()
        headers = signed_headers(secret=WEBHOOK_SECRET, msg_id=f"msg_{uuid.uuid4().hex}", body=body)
        headers["Content-Type"] = "application/json"
        deliveries.append((body, headers))
    return deliveries


def load(make_request, jobs: list, concurrency: int) -> tuple[float, list[float], list[int]]:
    latencies, statuses, lock = [], [], threading.Lock()
    queue = list(jobs)

    def sender():
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop()
            started = time.perf_counter()
            status = make_request(session, job)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                statuses.append(status)

    threads = [threading.Thread(target=sender) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, statuses


def wait_until_up(url: str) -> None:
    for _ in range(100):
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    sys.exit("gunicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (gthread when > 1)")
    parser.add_argument("--worker-during", action="store_true",
                        help="run the Celery worker during the load too (on 2 cores it competes with gunicorn for CPU)")
    args = parser.parse_args()

    env = production_env(fresh_database("webmagic_bench_intake"), PORT)
    manage(env, "migrate", "--noinput")
    setup_django(env)
    import redis

    redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()
    base = f"http://127.0.0.1:{PORT}"
    web = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "webmagic.wsgi", "--bind", f"127.0.0.1:{PORT}", "--workers", str(args.workers),
         "--threads", str(args.threads), "--log-level", "warning"], cwd=ROOT, env=env,
    )
    worker_cmd = [PYTHON, "-m", "celery", "-A", "webmagic", "worker", "--concurrency", "2", "--loglevel", "WARNING"]
    worker = subprocess.Popen(worker_cmd, cwd=ROOT, env=env) if args.worker_during else None
    try:
        wait_until_up(base + "/livez/")
        warmup = 200
        deliveries = signed_deliveries(args.requests + warmup)
        # Warm-up: every gunicorn worker opens its database, cache and broker connections.
        load(lambda s, _: s.get(base + "/livez/").status_code, list(range(warmup)), args.concurrency)
        load(lambda s, d: s.post(base + "/webhooks/recurrente/", data=d[0], headers=d[1]).status_code,
             deliveries[args.requests:], args.concurrency)
        deliveries = deliveries[:args.requests]

        trivial_time, trivial_lat, trivial_status = load(
            lambda s, _: s.get(base + "/livez/").status_code, list(range(args.requests)), args.concurrency
        )
        intake_time, intake_lat, intake_status = load(
            lambda s, d: s.post(base + "/webhooks/recurrente/", data=d[0], headers=d[1]).status_code, deliveries,
            args.concurrency,
        )
        from webhooks.models import WebhookEvent

        if worker is None:  # the queued tasks wait in Redis, as they would behind a busy worker
            worker = subprocess.Popen(worker_cmd, cwd=ROOT, env=env)
        deadline = time.time() + 300
        while WebhookEvent.objects.filter(status__in=["received", "processing"]).exists() and time.time() < deadline:
            time.sleep(1)
        events = WebhookEvent.objects.all()
        stored = events.count()
        done_once = events.filter(status__in=["processed", "ignored"], attempts=1).count()
    finally:
        for process in (web, worker):
            if process is not None:
                process.terminate()
                process.wait()

    trivial_rps, intake_rps = args.requests / trivial_time, args.requests / intake_time
    p50, p99 = percentile(intake_lat, 50) * 1000, percentile(intake_lat, 99) * 1000
    ok_status = all(s == 200 for s in intake_status) and all(s == 200 for s in trivial_status)
    print(f"requests per phase: {args.requests}, concurrency {args.concurrency}, "
          f"gunicorn workers {args.workers} x threads {args.threads}")
    print(f"trivial view /livez/:  {trivial_rps:8.0f} req/s  p50 {percentile(trivial_lat, 50) * 1000:6.1f} ms"
          f"  p99 {percentile(trivial_lat, 99) * 1000:6.1f} ms")
    print(f"webhook intake:        {intake_rps:8.0f} req/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
    print(f"ratio intake/trivial:  {intake_rps / trivial_rps:.2f}   (target >= 0.50) {'PASS' if intake_rps >= trivial_rps / 2 else 'MISS'}")
    print(f"intake p99:            {p99:.1f} ms (target < 50 ms) {'PASS' if p99 < 50 else 'MISS'}")
    print(f"all answers 200:       {ok_status}")
    sent = args.requests + warmup
    print(f"stored {stored} / sent {sent} (incl. warm-up); processed exactly once: {done_once} "
          f"{'PASS' if stored == done_once == sent else 'MISS'}")


if __name__ == "__main__":
    main()
