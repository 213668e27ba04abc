from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render
from django.views.decorators.cache import never_cache


def verified_customer_required(view):
    """Portal pages: signed in (else the login page, coming back here afterwards) and a verified
    email (else a page explaining how to verify, with a button to resend the link). Never cached:
    these pages carry one customer's data."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not user.email_verified:
            return render(request, "customers/verify_required.html", {"email": user.email}, status=403)
        return view(request, *args, **kwargs)

    return never_cache(wrapper)
