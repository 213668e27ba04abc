"""The recovery scan at 10,000 vs 1,000,000 checkout sessions, and the funnel page at 1,000,000.

    .venv/bin/python benchmarks/sessions_at_scale.py [--small 10000] [--large 1000000]

Builds a throwaway PostgreSQL database, fills it with sessions that look like production (most
completed or expired, a steady few hundred open checkouts), and times, in one run:
- the due-sessions query of the abandoned-cart scan (checkout.services.recovery) at both sizes;
- the funnel (checkout.selectors.funnel_metrics + funnel_daily) and the admin funnel page over
  the last 30 days with every one of the large set's sessions in that range (the worst case).
Targets (DESIGN "Performance"): scan(1M) <= 2 x scan(10k) and < 20 ms; funnel page < 1 s.
"""

import argparse
import statistics
import time

from _common import fresh_database, manage, production_env, setup_django, timed

OPEN_CHECKOUTS = 300  # open checkouts at any moment: what the partial index holds


def fill(site_id, total: int, already: int) -> None:
    """Insert sessions until there are `total`, spread over the last 30 days, via generate_series."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO checkout_checkoutsession
              (id, created_at, updated_at, site_id, kind, status, customer_name, customer_email, amount, currency,
               recurrente_checkout_id, checkout_url, checkout_error, user_agent, referrer, last_failure_reason,
               recovery_code, discount_percent, completed_at, reminder_sent_at, reconcile_checks)
            SELECT gen_random_uuid(), t, t, %s, 'purchase',
                   CASE WHEN g %% 3 = 0 THEN 'completed' WHEN g %% 3 = 1 THEN 'expired' ELSE 'abandoned' END,
                   'Buyer ' || g, 'buyer' || g || '@example.com', 495.00, 'USD',
                   'ch_bench' || g, 'https://app.recurrente.com/checkout-session/ch_bench' || g, '', '', '', '',
                   '', 0, CASE WHEN g %% 3 = 0 THEN t END, CASE WHEN g %% 3 = 2 THEN t + interval '20 minutes' END, 0
            FROM (SELECT g, now() - (random() * interval '30 days') AS t FROM generate_series(%s, %s) AS g) AS s
            """,
            [site_id, already + 1, total - OPEN_CHECKOUTS],
        )
        cursor.execute("ANALYZE checkout_checkoutsession")


def open_checkouts(site) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from checkout.models import CheckoutSession

    now = timezone.now()
    CheckoutSession.objects.bulk_create([
        CheckoutSession(site=site, status="checkout_created", customer_name="Open", customer_email=f"open{i}@example.com",
                        amount=495, recurrente_checkout_id=f"ch_open{i}", checkout_url="https://x/",
                        created_at=now - timedelta(minutes=i % 60))
        for i in range(OPEN_CHECKOUTS)
    ])


def scan_ms() -> float:
    from django.utils import timezone

    from checkout.services.recovery import recovery_due_sessions

    now = timezone.now()
    samples = timed(lambda: list(recovery_due_sessions(now=now)), repeat=50)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()

    env = production_env(fresh_database("webmagic_bench_scale"))
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")  # production settings serve hashed static names
    setup_django(env)
    from sites.models import Site

    site = Site.objects.create(slug="bench", business_name="Bench")
    open_checkouts(site)
    fill(site.pk, args.small, 0)
    small = scan_ms()
    started = time.perf_counter()
    fill(site.pk, args.large, args.small - OPEN_CHECKOUTS)
    print(f"filled {args.large:,} sessions in {time.perf_counter() - started:.0f} s")
    large = scan_ms()

    from datetime import timedelta

    from django.test import Client
    from django.utils import timezone

    from checkout.selectors import funnel_daily, funnel_metrics
    from customers.models import CustomerUser

    now = timezone.now()
    month_ago = now - timedelta(days=30)
    funnel = timed(lambda: (funnel_metrics(start=month_ago, end=now), funnel_daily(start=month_ago, end=now)), 3)
    staff = CustomerUser.objects.create_superuser("bench@example.com", "x" * 20)
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(staff)
    page = timed(lambda: client.get("/admin/funnel/"), 3)

    print(f"recovery scan, {args.small:>9,} sessions: {small:7.2f} ms (median of 50)")
    print(f"recovery scan, {args.large:>9,} sessions: {large:7.2f} ms (median of 50)")
    ratio = large / small
    print(f"ratio large/small: {ratio:.2f} (target <= 2) {'PASS' if ratio <= 2 else 'MISS'}; "
          f"large under 20 ms: {'PASS' if large < 20 else 'MISS'}")
    print(f"funnel queries over {args.large:,} sessions (30 days): {min(funnel) * 1000:.0f} ms (best of 3)")
    print(f"funnel admin page over {args.large:,} sessions: {min(page) * 1000:.0f} ms (best of 3) "
          f"(target < 1 s) {'PASS' if min(page) < 1 else 'MISS'}")


if __name__ == "__main__":
    main()
