"""Staff pages inside Django admin that are not a model's changelist."""

from datetime import datetime, time, timedelta
from typing import Any, cast

from django import forms
from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils import timezone

from . import selectors

DEFAULT_DAYS = 30
MAX_DAYS = 366


class FunnelRangeForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="inclusive")

    def clean(self) -> dict[str, Any]:
        # cast: Form.clean() returns cleaned_data (the stubs allow None for overrides that return nothing).
        cleaned = cast(dict[str, Any], super().clean())
        today = timezone.localdate()
        end = cleaned.get("end") or today
        start = cleaned.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError("The start date must be on or before the end date.")
        if (end - start).days >= MAX_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_DAYS} days.")
        cleaned["start"], cleaned["end"] = start, end
        return cleaned


def _bounds(start_date, end_date):
    tz = timezone.get_current_timezone()
    return (
        timezone.make_aware(datetime.combine(start_date, time.min), tz),
        timezone.make_aware(datetime.combine(end_date + timedelta(days=1), time.min), tz),
    )


def _funnel_bars(metrics: dict) -> list[dict]:
    stages = [
        ("Sessions started", metrics["started"]),
        ("Checkouts created", metrics["checkouts_created"]),
        ("Abandoned (reminded)", metrics["abandoned"]),
        ("Recovered", metrics["recovered"]),
        ("Completed", metrics["completed"]),
    ]
    top = max([value for _, value in stages] + [1])
    return [{"label": label, "value": value, "width": round(100 * value / top, 1)} for label, value in stages]


def _trend(daily: list[dict], start_date, end_date) -> dict:
    """Daily started/completed as SVG polyline points (no JavaScript charting library needed)."""
    by_day = {row["day"]: row for row in daily}
    days = [start_date + timedelta(days=i) for i in range((end_date - start_date).days + 1)]
    top = max([row["started"] for row in daily] + [row["completed"] for row in daily] + [1])
    width, height = 600, 160
    step = width / max(len(days) - 1, 1)

    def points(key):
        return " ".join(
            f"{i * step:.1f},{height - height * by_day.get(day, {}).get(key, 0) / top:.1f}" for i, day in enumerate(days)
        )

    return {"width": width, "height": height, "top": top, "started": points("started"), "completed": points("completed"),
            "first": days[0], "last": days[-1]}


def funnel_view(request):
    form = FunnelRangeForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        start_date = end_date = None
    else:
        if not form.is_bound:
            form = FunnelRangeForm({})
            form.is_valid()
        start_date, end_date = form.cleaned_data["start"], form.cleaned_data["end"]
    context = {**admin.site.each_context(request), "title": "Checkout funnel", "form": form}
    if start_date:
        start, end = _bounds(start_date, end_date)
        metrics = selectors.funnel_metrics(start=start, end=end)
        daily = selectors.funnel_daily(start=start, end=end)
        context.update(metrics=metrics, bars=_funnel_bars(metrics), trend=_trend(daily, start_date, end_date),
                       start_date=start_date, end_date=end_date)
    return TemplateResponse(request, "admin/checkout/funnel.html", context)
