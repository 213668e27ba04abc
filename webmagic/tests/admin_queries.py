"""Admin pages must run a fixed number of SQL queries whatever the number of rows (DESIGN, Performance)."""

from django.db import connection
from django.test.utils import CaptureQueriesContext


def page_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return len(queries.captured_queries)


def assert_constant_queries(client, url, make_rows, *, small=3, large=30) -> int:
    """Render `url` with `small` rows, then with `large` rows (made by `make_rows(n)`), and assert
    both run the same queries: no per-row query hides in a column or an inline."""
    make_rows(small)
    page_queries(client, url)  # warm-up: content types and other per-process caches
    with_small = page_queries(client, url)
    make_rows(large - small)
    with_large = page_queries(client, url)
    assert with_small == with_large, f"{url}: {with_small} queries with {small} rows, {with_large} with {large}"
    return with_large
