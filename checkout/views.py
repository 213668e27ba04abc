from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from customers import services as customer_services
from customers.forms import FirstPasswordForm
from customers.ratelimits import success_password_limits
from sites.models import Site
from webmagic.http import client_ip, see_other
from webmagic.models import EmailSuppression
from webmagic.money import from_cents
from webmagic.ratelimit import FAIL_OPEN, ratelimit

from . import selectors, tasks
from .forms import PurchaseForm
from .services import recovery, success_password
from .services.purchase import RequestContext, SiteNotForSale, purchase_start
from .services.sessions import CheckoutUnavailable


def _request_context(request) -> RequestContext:
    return RequestContext(
        ip_address=client_ip(request) or None,
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        referrer=request.META.get("HTTP_REFERER", ""),
    )


# The limits fail open: while the cache is down a buyer is served uncounted rather than lost.
@require_http_methods(["GET", "POST"])
@ratelimit(key="ip", rate="10/m", method="POST", when_cache_down=FAIL_OPEN)
@ratelimit(key="ip", rate="60/h", method="POST", when_cache_down=FAIL_OPEN)
def purchase(request, slug):
    site = get_object_or_404(Site, slug=slug)
    if not site.is_for_sale:
        return render(request, "checkout/not_for_sale.html", {"site": site}, status=409)
    form = PurchaseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            session = purchase_start(
                site_id=site.pk, full_name=form.cleaned_data["full_name"], email=form.cleaned_data["email"],
                request_context=_request_context(request),
            )
        except SiteNotForSale:
            return render(request, "checkout/not_for_sale.html", {"site": site}, status=409)
        except CheckoutUnavailable:
            retry_form = PurchaseForm(initial=form.cleaned_data)  # tidy values, no stale errors
            return render(request, "checkout/try_again.html", {"site": site, "form": retry_form}, status=503)
        success_password.checkout_bind_to_browser(browser_session=request.session, checkout_session=session)
        return see_other(session.checkout_url)
    return render(request, "checkout/purchase.html", {"site": site, "form": form}, status=400 if form.errors else 200)


@never_cache
@require_GET
def success(request):
    session = _success_session_or_404(request)
    state = _payment_state_nudged(session)
    account = success_password.success_password_account(
        browser_session=request.session, checkout_session=session, state=state,
    )
    return _success_page(request, session, state, password_form=FirstPasswordForm(account) if account else None)


@sensitive_post_parameters("new_password1", "new_password2")
@never_cache
@require_POST
@success_password_limits
def success_password_set(request):
    """The success page's "choose your password" form: the paying browser only, once (see the service)."""
    session = _success_session_or_404(request)
    state = selectors.payment_state(session)
    account = success_password.success_password_account(
        browser_session=request.session, checkout_session=session, state=state,
    )
    back_to_page = reverse("checkout:success") + f"?session={session.pk}"
    if account is None:
        return see_other(back_to_page)  # not this browser's to set, or already set: the ordinary page
    form = FirstPasswordForm(account, request.POST)
    if not form.is_valid():
        return _success_page(request, session, state, password_form=form, status=400)
    try:
        user = customer_services.customer_password_set_after_purchase(user=account, password=form.cleaned_data["new_password1"])
    except customer_services.PasswordAlreadySet:
        return see_other(back_to_page)
    # login() rotates the session key, so a session fixed before this moment is worthless.
    customer_services.customer_login(request=request, user=user)
    messages.success(request, "Your password is saved and you are signed in. Welcome to your dashboard.")
    return redirect(settings.LOGIN_REDIRECT_URL)


def _success_session_or_404(request):
    session = selectors.session_for_success_page(raw_id=request.GET.get("session"))
    if session is None:
        raise Http404("No such checkout")
    return session


def _success_page(request, session, state, *, password_form, status=200):
    return render(
        request, "checkout/success.html",
        {"session": session, "site": session.site, "state": state, "masked_email": _mask_email(session.customer_email),
         "password_form": password_form},
        status=status,
    )


@never_cache
@require_GET
def success_status(request):
    session = selectors.session_for_success_page(raw_id=request.GET.get("session"))
    if session is None:
        raise Http404("No such checkout")
    return JsonResponse({"state": _payment_state_nudged(session)})


def _payment_state_nudged(session) -> str:
    """The buyer's payment state; while nothing is confirmed, Recurrente is asked right away (in
    the background) instead of waiting for a webhook that test keys may never send."""
    state = selectors.payment_state(session)
    if state in ("confirming", "in_progress", "site_sold"):  # a closed checkout may still have been paid
        tasks.checkout_reconcile_soon(session=session)
    return state


def _mask_email(email: str) -> str:
    """Enough to recognise one's own address, not enough to harvest it from a leaked link."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}•••@{domain}"


# --- Sandbox: the imitation of Recurrente's hosted page (laptop/demo mode only) -------------
def _sandbox_checkout_or_404(checkout_id):
    from .models import SandboxCheckout

    if not settings.RECURRENTE_SANDBOX:
        raise Http404("The sandbox is off")
    return get_object_or_404(SandboxCheckout, pk=checkout_id)


@require_http_methods(["GET", "POST"])
def sandbox_checkout(request, checkout_id):
    from . import sandbox

    checkout = _sandbox_checkout_or_404(checkout_id)
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "pay":
            sandbox.sandbox_checkout_pay(checkout_id=checkout.pk)
            return see_other(checkout.request["success_url"])
        if action == "decline":
            sandbox.sandbox_checkout_decline(checkout_id=checkout.pk)
            return see_other(request.path + "?declined=1")
        return HttpResponseBadRequest("Unknown action")
    item = checkout.request["items"][0]
    context = {
        "checkout": checkout, "item": item, "amount": from_cents(item["amount_in_cents"]),
        "recurring": sandbox.is_recurring(checkout), "declined": request.GET.get("declined") == "1",
        "cancel_url": checkout.request.get("cancel_url", "/"),
        "subscription_events": list(sandbox.SUBSCRIPTION_EVENTS) if checkout.subscription_id else [],
        "webhooks_off": not settings.SANDBOX_WEBHOOKS,
    }
    return render(request, "checkout/sandbox_checkout.html", context)


@require_POST
def sandbox_subscription_event(request, checkout_id):
    """Staff tooling in the sandbox: push the subscription through a life-cycle event."""
    from . import sandbox

    checkout = _sandbox_checkout_or_404(checkout_id)
    if not request.user.is_authenticated or not request.user.is_staff:
        raise Http404("Staff only")
    event_type = request.POST.get("event_type", "")
    if event_type not in sandbox.SUBSCRIPTION_EVENTS or not checkout.subscription_id:
        return HttpResponseBadRequest("Unknown event")
    sandbox.sandbox_subscription_event(checkout_id=checkout.pk, event_type=event_type)
    return see_other(request.path.rsplit("/event/", 1)[0] + "/")


# --- Abandoned checkout recovery: the reminder's links (DESIGN §7) ---------------------------
@never_cache
@require_GET
@ratelimit(key="ip", rate="30/m", when_cache_down=FAIL_OPEN)  # like the purchase form: never lose the buyer
def recover(request, token):
    """The reminder's button: a discounted checkout within the window, the full price after it."""
    try:
        session = recovery.recovery_checkout_start(token=token, request_context=_request_context(request))
    except recovery.RecoveryLinkInvalid:
        raise Http404("No such offer") from None
    except recovery.RecoverySiteUnavailable as exc:
        return render(
            request, "checkout/recover_unavailable.html",
            {"site": exc.session.site, "already_yours": exc.already_yours, "charged": exc.charged},
            status=200 if exc.already_yours else 409,
        )
    except recovery.RecoveryOfferExpired as exc:
        original = exc.session
        form = PurchaseForm(initial={"full_name": original.customer_name, "email": original.customer_email})
        return render(
            request, "checkout/recover_expired.html",
            {"site": original.site, "form": form, "offer_ended": recovery.recovery_offer_ends(session=original),
             "discount_percent": settings.RECOVERY_DISCOUNT_PERCENT},
        )
    except CheckoutUnavailable as exc:
        return render(request, "checkout/recover_try_again.html", {"site": exc.session.site, "retry_url": request.path}, status=503)
    success_password.checkout_bind_to_browser(browser_session=request.session, checkout_session=session)
    return see_other(session.checkout_url)


# A one-click unsubscribe (RFC 8058) is a POST from the mail provider with no cookies and no CSRF
# token, so this view cannot require one. The signed token in the URL is the authorisation, and the
# only thing a forged POST could do is unsubscribe the owner of a token the forger already has.
@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    """GET asks for confirmation (link scanners must not unsubscribe anyone); POST unsubscribes."""
    try:
        email = recovery.unsubscribe_token_email(token=token)
    except recovery.UnsubscribeLinkExpired:
        # 410 for GET and one-click POST alike: the link was real, but the address it stood for
        # was deleted with the old attempt, so nothing was (or can be) unsubscribed through it.
        return render(request, "checkout/unsubscribe_expired.html", status=410)
    if email is None:
        raise Http404("No such unsubscribe link")
    if request.method == "POST":
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        source = EmailSuppression.Source.ONE_CLICK if one_click else EmailSuppression.Source.LINK
        recovery.email_suppression_create(email=email, source=source)
        return render(request, "checkout/unsubscribe_done.html", {"masked_email": _mask_email(email)})
    return render(request, "checkout/unsubscribe.html", {"masked_email": _mask_email(email)})
