"""One reconcile pass against 10,000 due checkouts, and its cost at 1,000,000 sessions vs 10,000.

    .venv/bin/python benchmarks/reconcile_pass.py [--open 10000] [--large 1000000] [--latency-ms 50]
                                                  [--batch 300] [--repeat 5]
                                                  [--abandoned-percent 33] [--keep]

Builds a throwaway PostgreSQL database and fills checkout_checkoutsession with `--open` open
checkouts (status checkout_created, created over the last 24 hours, every one of them due now:
the worst case) spread over 50 sites. Recurrente is faked at the HTTP boundary: a threaded stdlib
HTTP server on 127.0.0.1 answers GET /checkouts/{id} with an unpaid checkout after
`--latency-ms`, and RECURRENTE_API_URL points at it, so the real client (its requests session,
keep-alive and timeouts) is what gets measured. The server counts the calls and connections.

1. One `reconcile_pass()` with its own limits (CHECKOUT_BATCH, TIME_BUDGET_SECONDS): API calls,
   sessions checked, sessions left for the next run, wall time; passes (every 5 minutes) needed to
   ask about every due session once; the steady-state call rate the back-off implies.
2. The due query (`reconcile_due_sessions(limit=CHECKOUT_BATCH)`, median of 50, plus EXPLAIN) and a
   whole pass with the fake answering at once (`--batch`), with the open sessions alone in the table,
   then again after adding closed sessions up to `--large` (completed and expired ones keeping a
   stale next_reconcile_at in the past, `--abandoned-percent` abandoned ones with none). The open
   sessions are due again before each measurement, so both sizes see the same work. Also: the
   pass's other query over the table (the count of sessions left for the next run), the SQL
   statements, WAL and SQL time per kind of statement of one pass.
Target (DESIGN "Performance", the recovery scan's rule applied to the reconciler): large/small
<= 2 for the due query and for the pass.
"""

import argparse
import json
import math
import re
import statistics
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
from _common import PG_ADMIN, ROOT, fresh_database, manage, production_env, setup_django, timed

DATABASE = "webmagic_bench_reconcile"
SECRET_KEY = "sk_test_bench"
SITES = 50
BEAT = timedelta(minutes=5)  # migration 0007: the pass runs every 5 minutes
UNPAID = json.loads((ROOT / "checkout/tests/fixtures/recurrente/api/get_checkout.unpaid.response.json").read_text())


# --- A fake Recurrente on the loopback interface ---------------------------------------------

class FakeRecurrente:
    """GET /api/checkouts/{id} -> an unpaid checkout after `latency` seconds. Counts calls."""

    def __init__(self, latency: float):
        self.latency = latency
        self.calls = 0
        self.connections = 0
        self.unexpected = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real API over TLS
            disable_nagle_algorithm = True

            def setup(self):
                super().setup()
                with fake.lock:
                    fake.connections += 1

            def do_GET(self):  # noqa: N802 (http.server's naming)
                prefix = "/api/checkouts/"
                if self.headers.get("X-SECRET-KEY") != SECRET_KEY:
                    self._answer(401, {"message": "Unauthorized"})
                    return
                if not self.path.startswith(prefix):
                    with fake.lock:
                        fake.unexpected += 1
                    self._answer(404, {"message": "Not found"})
                    return
                with fake.lock:
                    fake.calls += 1
                if fake.latency:
                    time.sleep(fake.latency)
                self._answer(200, dict(UNPAID, id=self.path[len(prefix):]))

            def _answer(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --- Data ------------------------------------------------------------------------------------

COLUMNS = """id, created_at, updated_at, site_id, kind, status, customer_name, customer_email, amount, currency,
    recurrente_checkout_id, checkout_url, checkout_created_at, checkout_error, user_agent, referrer,
    last_failure_reason, recovery_code, discount_percent, completed_at, expired_at, abandoned_at,
    reminder_sent_at, next_reconcile_at, reconcile_checks"""


def make_sites() -> list:
    from sites.models import Site

    sites = Site.objects.bulk_create(Site(slug=f"bench-{i}", business_name=f"Bench {i}") for i in range(SITES))
    return [str(site.pk) for site in sites]


def fill_open(site_ids: list, count: int) -> None:
    """`count` open checkouts created over the last 24 hours, not yet asked about."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO checkout_checkoutsession ({COLUMNS})
            SELECT gen_random_uuid(), t, t, (%s::uuid[])[1 + g %% {SITES}], 'purchase', 'checkout_created',
                   'Buyer ' || g, 'open' || g || '@example.com', 495.00, 'USD',
                   'ch_open' || g, 'https://app.recurrente.com/checkout-session/ch_open' || g, t, '', '', '',
                   '', '', 0, NULL, NULL, NULL, NULL, now(), 0
            FROM (SELECT g, now() - random() * interval '24 hours' AS t FROM generate_series(1, %s) AS g) AS s
            """,
            [site_ids, count],
        )


def fill_closed(site_ids: list, first: int, last: int, abandoned_percent: int) -> None:
    """Closed sessions over the past year: completed and expired ones keep the stale next_reconcile_at
    that the webhook path and the expiry cleanup leave behind (in the past, so only their status keeps
    them out of the due query); abandoned ones were ended by the reconciler (next_reconcile_at NULL).
    `abandoned_percent` of them are abandoned, the rest half completed, half expired."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO checkout_checkoutsession ({COLUMNS})
            SELECT gen_random_uuid(), t, t, (%s::uuid[])[1 + g %% {SITES}], 'purchase', status,
                   'Buyer ' || g, 'buyer' || g || '@example.com', 495.00, 'USD',
                   'ch_closed' || g, 'https://app.recurrente.com/checkout-session/ch_closed' || g, t, '', '', '',
                   '', CASE status WHEN 'abandoned' THEN 'rc' || g ELSE '' END, 0,
                   CASE status WHEN 'completed' THEN t + interval '10 minutes' END,
                   CASE status WHEN 'expired' THEN t + interval '48 hours' END,
                   CASE status WHEN 'abandoned' THEN t + interval '20 minutes' END,
                   CASE status WHEN 'abandoned' THEN t + interval '20 minutes' END,
                   CASE status WHEN 'abandoned' THEN NULL ELSE t + interval '1 hour' END,
                   CASE status WHEN 'completed' THEN 4 ELSE 28 END
            FROM (SELECT g, now() - interval '3 days' - random() * interval '365 days' AS t,
                         CASE WHEN g %% 100 < %s THEN 'abandoned' WHEN g %% 2 = 0 THEN 'completed' ELSE 'expired' END
                           AS status
                  FROM generate_series(%s, %s) AS g) AS s
            """,
            [site_ids, abandoned_percent, first, last],
        )


def make_all_open_due() -> None:
    """Every open benchmark checkout due now (the worst case), as if never asked about; then VACUUM
    ANALYZE so both table sizes are measured in the same, clean state."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE checkout_checkoutsession
               SET next_reconcile_at = now() - interval '1 second' - random() * interval '5 minutes',
                   last_reconciled_at = NULL, reconcile_checks = 0
             WHERE recurrente_checkout_id LIKE 'ch_open%%'
            """
        )
        cursor.execute("VACUUM ANALYZE checkout_checkoutsession")


def table_rows() -> tuple[int, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE status IN ('checkout_created', 'abandoned')"
            " AND next_reconcile_at IS NOT NULL) FROM checkout_checkoutsession"
        )
        return cursor.fetchone()


# --- Measures --------------------------------------------------------------------------------

def one_pass(fake: FakeRecurrente, **kwargs) -> dict:
    from checkout.services.reconcile import reconcile_pass

    calls, connections = fake.calls, fake.connections
    started = time.perf_counter()
    report = reconcile_pass(**kwargs)
    seconds = time.perf_counter() - started
    run = report.run
    return {"seconds": seconds, "calls": fake.calls - calls, "connections": fake.connections - connections,
            "checked": run.checkouts_checked, "left": run.left_for_next_run, "errors": run.errors,
            "stopped": run.stopped_early, "results": dict(report.results)}


def due_query(batch: int) -> dict:
    """Median of 50 runs of the reconciler's own due query, and EXPLAIN of the SQL it sent."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from checkout.services.reconcile import reconcile_due_sessions

    now = timezone.now()
    with CaptureQueriesContext(connection) as captured:
        found = len(reconcile_due_sessions(now=now, limit=batch))
    sql = captured.captured_queries[-1]["sql"]
    samples = timed(lambda: reconcile_due_sessions(now=now, limit=batch), repeat=50)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        cursor.execute("EXPLAIN " + sql)
        text = "\n".join(row[0] for row in cursor.fetchall())
    root = plan[0]["Plan"]
    buffers = root.get("Shared Hit Blocks", 0) + root.get("Shared Read Blocks", 0)
    return {"ms": statistics.median(samples) * 1000, "found": found, "uses_index": "checkout_reconcile_due_idx" in text,
            "buffers": buffers, "plan": text}


def statement_kind(sql: str) -> str:
    """A short name for one SQL statement: verb, table, and the columns an UPDATE sets."""
    verb = sql.lstrip().split(None, 1)[0].upper()
    match = re.search(r'(?:FROM|UPDATE|INTO)\s+"(\w+)"', sql)
    kind = f"{verb} {match.group(1) if match else '?'}"
    if verb == "UPDATE":
        kind += " SET " + ",".join(re.findall(r'"(\w+)" =', sql.split(" WHERE ")[0]))
    elif verb == "SELECT":
        kind += f" ({sql.split(' FROM ')[0].count(',') + 1} cols)"
    return kind


def pass_cost(fake: FakeRecurrente, batch: int, repeat: int) -> dict:
    """A whole pass of `batch` checkouts with the fake answering at once: median and best of
    `repeat` passes; then one more, not timed, for its SQL: statements, time per kind of
    statement (measured around each execute, commit included), WAL bytes written."""
    from django.db import connection

    fake.latency = 0
    one_pass(fake, checkout_batch=batch)  # warm the caches at this size
    runs = [one_pass(fake, checkout_batch=batch) for _ in range(repeat)]
    profile: dict[str, list[float]] = {}
    count = []

    def profiled(execute, sql, params, many, context):
        if "COUNT(*)" in sql:
            count.append((sql, params))
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            profile.setdefault(statement_kind(sql), []).append(time.perf_counter() - started)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()")
        lsn = cursor.fetchone()[0]
    with connection.execute_wrapper(profiled):
        counted = one_pass(fake, checkout_batch=batch)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", [lsn])
        wal = int(cursor.fetchone()[0])
    assert all(run["checked"] == batch for run in [*runs, counted]), runs
    seconds = [run["seconds"] for run in runs]
    with connection.cursor() as cursor:  # the pass's other query over the table: "left for the next run"
        sql, params = count[0]
        count_ms = statistics.median(timed(lambda: cursor.execute(sql, params), repeat=20)) * 1000
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        count_plan = "\n".join(row[0] for row in cursor.fetchall())
    return {"seconds": statistics.median(seconds), "best": min(seconds), "calls": counted["calls"],
            "count_ms": count_ms, "count_plan": count_plan,
            "queries": sum(len(times) for times in profile.values()), "profile": profile, "wal": wal}


def schedule() -> dict:
    """Looks per checkout over its life, from the reconciler's own back-off (checkout_next_check):
    on time, and as the 5-minute beat actually makes them (each look at the first tick after it is
    due, averaged over where creation falls between two ticks)."""
    from django.utils import timezone

    from checkout.models import CheckoutSession
    from checkout.services.reconcile import EXPIRY_GRACE, checkout_next_check
    from checkout.services.sessions import RECONCILE_FIRST_LOOK_MINUTES, checkout_lifetime

    def looks(start, tick_phase: timedelta | None) -> int:
        session = CheckoutSession(created_at=start, checkout_created_at=start)
        due, count = start + timedelta(minutes=RECONCILE_FIRST_LOOK_MINUTES), 0
        while due is not None:
            at = due
            if tick_phase is not None:  # the first beat tick at or after `due`
                ticks = math.ceil((due - start - tick_phase) / BEAT)
                at = start + tick_phase + ticks * BEAT
            count += 1
            due = checkout_next_check(session=session, now=at)
        return count

    start = timezone.now().replace(microsecond=0)
    on_time = looks(start, None)
    phases = [timedelta(seconds=s) for s in range(0, int(BEAT.total_seconds()), 15)]
    with_beat = statistics.mean(looks(start, phase) for phase in phases)
    life_hours = (checkout_lifetime() + EXPIRY_GRACE).total_seconds() / 3600
    return {"on_time": on_time, "with_beat": with_beat, "life_hours": life_hours}


def drop(name: str) -> None:
    from django.apps import apps

    if apps.ready:
        from django.db import connections

        connections.close_all()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--open", type=int, default=10_000, help="open checkouts, all due now")
    parser.add_argument("--large", type=int, default=1_000_000, help="sessions in the table for the large size")
    parser.add_argument("--latency-ms", type=float, default=50, help="the fake's answer time for the first pass")
    parser.add_argument("--batch", type=int, default=300, help="checkouts per pass when comparing sizes")
    parser.add_argument("--repeat", type=int, default=5, help="passes timed per size (median)")
    parser.add_argument("--abandoned-percent", type=int, default=33,
                        help="share of the closed sessions left abandoned (next_reconcile_at NULL); the rest are "
                             "completed or expired with a stale next_reconcile_at")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    fake = FakeRecurrente(latency=args.latency_ms / 1000)
    env = production_env(fresh_database(DATABASE))
    env.update({
        "RECURRENTE_API_URL": fake.url, "RECURRENTE_SECRET_KEY": SECRET_KEY,
        "REDIS_URL": "redis://127.0.0.1:6379/9", "CELERY_BROKER_URL": "redis://127.0.0.1:6379/9",
    })
    try:
        manage(env, "migrate", "--noinput")
        setup_django(env)
        run(args, fake)
    finally:
        fake.stop()
        if args.keep:
            print(f"kept database {DATABASE}")
        else:
            drop(DATABASE)


def run(args, fake: FakeRecurrente) -> None:
    from checkout.services.reconcile import CHECKOUT_BATCH, TIME_BUDGET_SECONDS

    site_ids = make_sites()
    started = time.perf_counter()
    fill_open(site_ids, args.open)
    make_all_open_due()
    print(f"filled {args.open:,} open sessions in {time.perf_counter() - started:.1f} s")

    # 1. One pass as the beat runs it, the fake answering after --latency-ms.
    first = one_pass(fake)
    per_session = first["seconds"] / max(first["checked"], 1)
    per_pass = min(CHECKOUT_BATCH, int(TIME_BUDGET_SECONDS / per_session))
    passes = math.ceil(args.open / per_pass)
    plan = schedule()
    rate = args.open * plan["on_time"] / plan["life_hours"]
    rate_beat = args.open * plan["with_beat"] / plan["life_hours"]
    capacity = CHECKOUT_BATCH * (timedelta(hours=1) / BEAT)
    sustainable = capacity * plan["life_hours"] / plan["on_time"]

    # 2. Cost at --open sessions in the table, then at --large.
    small_rows = table_rows()
    make_all_open_due()
    small_query = due_query(CHECKOUT_BATCH)
    small_pass = pass_cost(fake, args.batch, args.repeat)
    started = time.perf_counter()
    fill_closed(site_ids, args.open + 1, args.large, args.abandoned_percent)
    make_all_open_due()
    print(f"filled {args.large - args.open:,} closed sessions ({args.abandoned_percent}% abandoned) "
          f"in {time.perf_counter() - started:.0f} s")
    large_rows = table_rows()
    large_query = due_query(CHECKOUT_BATCH)
    large_pass = pass_cost(fake, args.batch, args.repeat)

    print()
    print(f"One reconcile pass, {args.open:,} open checkouts all due, fake Recurrente answering in "
          f"{args.latency_ms:g} ms (batch {CHECKOUT_BATCH}, time budget {TIME_BUDGET_SECONDS} s):")
    print(f"  API calls made (counted by the fake): {first['calls']} over {first['connections']} connection(s); "
          f"unexpected requests: {fake.unexpected}")
    print(f"  sessions checked: {first['checked']} {first['results']}; errors: {first['errors']}; "
          f"stopped early: {first['stopped'] or 'no'}")
    print(f"  left for the next run: {first['left']:,}")
    print(f"  wall time: {first['seconds']:.2f} s ({per_session * 1000:.1f} ms per session, of which "
          f"{args.latency_ms:g} ms is the fake's answer time)")
    print(f"  passes to ask about all {args.open:,} once: ceil({args.open:,} / {per_pass}) = {passes} "
          f"= {passes * BEAT.total_seconds() / 3600:.1f} h at one pass every 5 minutes")
    print(f"  looks per checkout over its life (back-off {plan['on_time']} on time, {plan['with_beat']:.1f} "
          f"with the 5-minute beat) over {plan['life_hours']:.2f} h (lifetime + expiry grace)")
    print(f"  steady-state call rate for {args.open:,} open = open x looks / life hours = "
          f"{args.open:,} x {plan['on_time']} / {plan['life_hours']:.2f} = {rate:,.0f} calls/h "
          f"({rate_beat:,.0f} with the beat's lag)")
    print(f"  pass capacity = CHECKOUT_BATCH x 12 passes/h = {capacity:,.0f} calls/h: enough for "
          f"{sustainable:,.0f} open checkouts at most")
    print()
    rows = [
        ("sessions in table (open)", f"{small_rows[0]:,} ({small_rows[1]:,})", f"{large_rows[0]:,} ({large_rows[1]:,})", ""),
        (f"due query, limit {CHECKOUT_BATCH} (median of 50)", f"{small_query['ms']:.2f} ms",
         f"{large_query['ms']:.2f} ms", f"{large_query['ms'] / small_query['ms']:.2f}"),
        ("due query buffers read", str(small_query["buffers"]), str(large_query["buffers"]),
         f"{large_query['buffers'] / max(small_query['buffers'], 1):.2f}"),
        ("due query uses checkout_reconcile_due_idx", str(small_query["uses_index"]), str(large_query["uses_index"]), ""),
        (f"pass of {args.batch}, fake at 0 ms (median of {args.repeat})", f"{small_pass['seconds'] * 1000:.0f} ms",
         f"{large_pass['seconds'] * 1000:.0f} ms", f"{large_pass['seconds'] / small_pass['seconds']:.2f}"),
        (f"pass of {args.batch}, fake at 0 ms (best of {args.repeat})", f"{small_pass['best'] * 1000:.0f} ms",
         f"{large_pass['best'] * 1000:.0f} ms", f"{large_pass['best'] / small_pass['best']:.2f}"),
        ("the pass's count of sessions left (median of 20)", f"{small_pass['count_ms']:.2f} ms",
         f"{large_pass['count_ms']:.2f} ms", f"{large_pass['count_ms'] / small_pass['count_ms']:.2f}"),
        ("SQL statements / API calls in one pass", f"{small_pass['queries']} / {small_pass['calls']}",
         f"{large_pass['queries']} / {large_pass['calls']}", ""),
        ("WAL written by one pass", f"{small_pass['wal'] / 2**20:.1f} MiB", f"{large_pass['wal'] / 2**20:.1f} MiB",
         f"{large_pass['wal'] / small_pass['wal']:.2f}"),
    ]
    print(f"{'measure':<48} {'small':>18} {'large':>18} {'large/small':>11}")
    for name, small, large, ratio in rows:
        print(f"{name:<48} {small:>18} {large:>18} {ratio:>11}")
    query_ratio = large_query["ms"] / small_query["ms"]
    pass_ratio = large_pass["seconds"] / small_pass["seconds"]
    print(f"due query ratio {query_ratio:.2f} (target <= 2) {'PASS' if query_ratio <= 2 else 'MISS'}; "
          f"pass ratio {pass_ratio:.2f} (target <= 2) {'PASS' if pass_ratio <= 2 else 'MISS'}")
    print(f"\nWhere one pass's SQL time goes (ms per statement, median; count in one pass of {args.batch}):")
    for kind in sorted(small_pass["profile"], key=lambda k: -sum(small_pass["profile"][k])):
        small_times, large_times = small_pass["profile"][kind], large_pass["profile"].get(kind, [0])
        small_ms, large_ms = statistics.median(small_times) * 1000, statistics.median(large_times) * 1000
        print(f"  {len(small_times):>4} x {kind[:70]:<70} {small_ms:7.2f} {large_ms:7.2f} "
              f"ratio {large_ms / small_ms if small_ms else 0:.2f}; total {sum(small_times) * 1000:6.0f} -> "
              f"{sum(large_times) * 1000:6.0f} ms")
    print("\nEXPLAIN of the due query at the large size:\n" + large_query["plan"])
    print("\nEXPLAIN ANALYZE of the pass's count at the small size:\n" + small_pass["count_plan"])
    print("\nEXPLAIN ANALYZE of the pass's count at the large size:\n" + large_pass["count_plan"])


if __name__ == "__main__":
    main()
