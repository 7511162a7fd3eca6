"""Number and date formatting for the usage page."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template
from django.utils.dateparse import parse_datetime
from django.utils.formats import number_format

register = template.Library()


@register.filter
def thousands(value):
    """12345 → "12,345" in the current language's style."""
    if value in (None, ""):
        return "0"
    return number_format(int(value), force_grouping=True)


@register.filter
def money(value):
    """Dollars with cents; fractions of a cent keep their significant digits."""
    try:
        amount = Decimal(str(value or 0))
    except InvalidOperation:
        return value
    if amount == 0 or abs(amount) >= Decimal("0.01"):
        return number_format(amount, decimal_pos=2, force_grouping=True)
    return f"{amount.normalize():f}"


@register.filter
def parse_iso(value):
    return parse_datetime(value) if isinstance(value, str) else value
