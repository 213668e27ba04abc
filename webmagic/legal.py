"""The terms, privacy and refund-policy pages. Their words are templates the business edits
(templates/legal/), so changing a policy is a template change, not a code change."""

from django.shortcuts import render
from django.views.decorators.http import require_GET

LEGAL_PAGES = {"terms": "legal/terms.html", "privacy": "legal/privacy.html", "refunds": "legal/refunds.html"}


@require_GET
def legal_page(request, page: str):
    return render(request, LEGAL_PAGES[page])
