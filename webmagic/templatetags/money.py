"""`{{ amount|money }}`, `{{ amount|money:currency }}`: the one way customers read a price
("$495", "$445.50", "1,250.00 GTQ"), the same as the emails (webmagic.money.format_money)."""

from django import template

from webmagic.money import format_money

register = template.Library()


@register.filter
def money(amount, currency="USD"):
    if amount is None or amount == "":
        return ""
    return format_money(amount, currency or "USD")
