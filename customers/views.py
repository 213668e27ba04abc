import logging

from django.contrib.auth import login
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from . import services
from .forms import ChoosePasswordForm

logger = logging.getLogger(__name__)

# Like Django's reset view, the token leaves the URL after the first GET (kept in the session), so
# the page holding the form never carries it in its address, history or Referer.
SET_PASSWORD_SESSION_KEY = "_set_password_token"
SET_PASSWORD_URL_TOKEN = "choose"


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

    form = ChoosePasswordForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = services.customer_password_set_from_link(user=user, password=form.cleaned_data["new_password1"])
        request.session.pop(SET_PASSWORD_SESSION_KEY, None)
        # login() rotates the session key, so a session fixed before this moment is worthless.
        login(request, user)
        return redirect("/portal/")
    response = render(request, "customers/set_password.html", {"form": form, "email": user.email})
    response["Referrer-Policy"] = "no-referrer"
    return response


def _invalid_link(request, user):
    logger.info("set-password link refused for customer %s", user.pk if user else "unknown")
    response = render(request, "customers/set_password_invalid.html", {"password_reset_url": "/portal/password-reset/"})
    response["Referrer-Policy"] = "no-referrer"
    return response
