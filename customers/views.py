import logging
from typing import cast

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from . import emails, services
from .decorators import verified_customer_required
from .forms import (
    AccountPasswordChangeForm,
    ChoosePasswordForm,
    EmailLoginForm,
    PasswordResetRequestForm,
    ProfileForm,
)
from .models import CustomerUser
from .ratelimits import login_limits, password_change_limits, password_reset_limits, verify_resend_limits
from .tokens import password_reset_token_generator, verify_email_token_generator

logger = logging.getLogger(__name__)

# Like Django's reset view, the token leaves the URL after the first GET (kept in the session), so
# the page holding the form never carries it in its address, history or Referer.
SET_PASSWORD_SESSION_KEY = "_set_password_token"
SET_PASSWORD_URL_TOKEN = "choose"


def _no_referrer(response):
    # Pages reached through a token link must not hand that link to another site. Not
    # "no-referrer": with it browsers send `Origin: null` on the page's own form POST, which
    # Django's CSRF origin check rightly refuses. "same-origin" keeps both.
    response["Referrer-Policy"] = "same-origin"
    return response


# --- Set-your-password link (from the welcome email) --------------------------------------------

@sensitive_post_parameters("new_password1", "new_password2")
@never_cache
@require_http_methods(["GET", "POST"])
def set_password(request, uidb64: str, token: str):
    user = services.set_password_user_from_uidb64(uidb64=uidb64)
    if token != SET_PASSWORD_URL_TOKEN:
        if request.method == "GET" and services.set_password_token_check(user=user, token=token):
            request.session[SET_PASSWORD_SESSION_KEY] = token
            return redirect(reverse("customers:set_password", kwargs={"uidb64": uidb64, "token": SET_PASSWORD_URL_TOKEN}))
        return _invalid_link(request, user)

    session_token = request.session.get(SET_PASSWORD_SESSION_KEY)
    if not services.set_password_token_check(user=user, token=session_token):
        return _invalid_link(request, user)
    # cast: the token checked out, so the link named an active account.
    user = cast(CustomerUser, user)

    form = ChoosePasswordForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = services.customer_password_set_from_link(user=user, password=form.cleaned_data["new_password1"])
        request.session.pop(SET_PASSWORD_SESSION_KEY, None)
        # login() rotates the session key, so a session fixed before this moment is worthless.
        services.customer_login(request=request, user=user)
        return redirect(settings.LOGIN_REDIRECT_URL)
    return _no_referrer(render(request, "customers/set_password.html", {"form": form, "email": user.email}))


def _invalid_link(request, user):
    logger.info("set-password link refused for customer %s", user.pk if user else "unknown")
    return _no_referrer(render(
        request, "customers/set_password_invalid.html", {"password_reset_url": reverse("customers:password_reset")}
    ))


# --- Sign in and out ------------------------------------------------------------------------------

@method_decorator(login_limits, name="dispatch")
class LoginView(auth_views.LoginView):
    template_name = "customers/login.html"
    authentication_form = EmailLoginForm
    redirect_authenticated_user = True

    def get_redirect_url(self):
        """`next` only to a path on this site: no scheme, no host (not even ours), no `//evil`."""
        url = self.request.POST.get(self.redirect_field_name, self.request.GET.get(self.redirect_field_name, ""))
        safe = url.startswith("/") and url_has_allowed_host_and_scheme(url, allowed_hosts=None)
        # Never back to this page: a signed-in visitor would be redirected in a loop.
        return url if safe and not url.startswith(self.request.path) else ""

    def form_valid(self, form):
        services.customer_login(request=self.request, user=form.get_user())
        return redirect(self.get_success_url())

    def form_invalid(self, form):
        return self.render_to_response(self.get_context_data(form=form), status=400)


login_view = LoginView.as_view()
class LogoutView(auth_views.LogoutView):
    next_page = "customers:login"  # a URL name: LogoutView resolves it

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        # After logout() flushed the old session, so the message lives in the fresh one and is
        # shown once, on the sign-in page the redirect lands on.
        messages.info(request, "You are signed out. Sign in again any time.")
        return response


logout_view = LogoutView.as_view()
# The admin's own login form gets the same limits, sharing the portal's counters (webmagic/urls.py).
admin_login = login_limits(admin.site.login)


# --- Password reset -------------------------------------------------------------------------------

@never_cache
@require_http_methods(["GET", "POST"])
@password_reset_limits
def password_reset(request):
    """One answer whatever the address: the same page, status, body and work (one email row written
    and one send enqueued; the send finds the account, or cancels the email if there is none), so
    neither the page nor its timing tells who is a customer."""
    form = PasswordResetRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        return render(request, "customers/password_reset_sent.html")
    return render(request, "customers/password_reset.html", {"form": form}, status=400 if form.errors else 200)


@method_decorator(sensitive_post_parameters("new_password1", "new_password2"), name="dispatch")
class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's reset-link flow (token moved into the session, one-hour links from
    PASSWORD_RESET_TIMEOUT, the password hash change spending the link), with our service and
    sign-in at the end. Works for accounts that never had a password."""

    template_name = "customers/password_reset_confirm.html"
    form_class = ChoosePasswordForm
    reset_url_token = SET_PASSWORD_URL_TOKEN
    token_generator = password_reset_token_generator

    def dispatch(self, *args, **kwargs):
        return _no_referrer(super().dispatch(*args, **kwargs))

    def get_user(self, uidb64):
        return services.set_password_user_from_uidb64(uidb64=uidb64)  # active accounts only

    def form_valid(self, form):
        # The link reached the inbox, so this also verifies the address. Sessions elsewhere hold
        # an HMAC of the old password hash and are signed out by the change.
        user = services.customer_password_set_from_link(user=self.user, password=form.cleaned_data["new_password1"])
        self.request.session.pop(auth_views.INTERNAL_RESET_SESSION_TOKEN, None)
        services.customer_login(request=self.request, user=user)
        messages.success(self.request, "Your new password is saved and you are signed in.")
        return redirect(settings.LOGIN_REDIRECT_URL)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["email"] = self.user.email if self.validlink else ""
        context["password_reset_url"] = reverse("customers:password_reset")
        return context


password_reset_confirm = PasswordResetConfirmView.as_view()


# --- Email verification ---------------------------------------------------------------------------

@never_cache
@require_http_methods(["GET", "POST"])
def verify_email(request, uidb64: str, token: str):
    """GET only shows a button: mail scanners open links, and must not confirm anything."""
    user = services.set_password_user_from_uidb64(uidb64=uidb64)
    if not (user and verify_email_token_generator.check_token(user, token)):
        logger.info("verification link refused for customer %s", user.pk if user else "unknown")
        return _no_referrer(render(request, "customers/verify_email_invalid.html"))
    if request.method == "POST":
        services.customer_email_verify(user=user)
        messages.success(request, "Thank you — your email address is confirmed.")
        if request.user.is_authenticated and request.user.pk == user.pk:
            return redirect(settings.LOGIN_REDIRECT_URL)
        return redirect("customers:login")
    return _no_referrer(render(request, "customers/verify_email_confirm.html", {"email": user.email}))


@require_POST
@login_required
@verify_resend_limits
def verify_email_resend(request):
    if request.user.email_verified:
        return redirect(settings.LOGIN_REDIRECT_URL)
    emails.verify_email_queue(user=request.user)
    messages.success(request, f"We sent a new confirmation link to {request.user.email}. It works for 24 hours.")
    return redirect(settings.LOGIN_REDIRECT_URL)


@sensitive_post_parameters("old_password", "new_password1", "new_password2")
@require_http_methods(["GET", "POST"])
@verified_customer_required
@password_change_limits
def account(request):
    user = request.user
    action = request.POST.get("action") if request.method == "POST" else None
    profile_form = ProfileForm(
        request.POST if action == "profile" else None, initial={"full_name": user.full_name, "phone": user.phone},
    )
    password_form = AccountPasswordChangeForm(user, request.POST if action == "password" else None)
    if action == "profile" and profile_form.is_valid():
        services.customer_profile_update(user=user, **profile_form.cleaned_data)
        messages.success(request, "Your details are saved.")
        return redirect("customers:account")
    if action == "password" and password_form.is_valid():
        services.customer_password_change(request=request, user=user, password=password_form.cleaned_data["new_password1"])
        messages.success(request, "Your password is changed. Any other device signed in to your account has been signed out.")
        return redirect("customers:account")
    invalid = (action == "profile" and profile_form.errors) or (action == "password" and password_form.errors)
    return render(
        request, "customers/account.html", {"profile_form": profile_form, "password_form": password_form},
        status=400 if invalid else 200,
    )
