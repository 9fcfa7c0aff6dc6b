"""Locale of a document and how its amounts, quantities, rates and dates are written (babel, CLDR data).

Formatting never changes a figure: amounts are already rounded to the currency's minor unit by the close
(`rating.money.round_money`), and babel is called with `decimal_quantization=False`, so it only adds
grouping, the decimal sign and the currency symbol; digits beyond the currency's (tier amounts, unit prices
such as 0.000137) are written in full, never rounded a second time. Amounts show at least the currency's
ISO 4217 minor digits (`rating.money.minor_units`, the digits the close rounds to), not CLDR's.
"""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta
from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_interval
from babel.numbers import format_decimal, format_percent

from meterstream.rating.money import EXACT, ROUNDING, minor_units
from meterstream.schemas.invoice import Address, InvoiceDoc, Party

__all__ = ["DEFAULT_LOCALE", "Formatter", "choose_locale", "formatter_for"]

DEFAULT_LOCALE = "en"
_TICK = timedelta(microseconds=1)
_ZERO = Decimal(0)
_CITY_STATE_POSTAL = {"US", "CA", "AU"}  # countries whose postal line is "City, ST 12345"


def _plain(value: Decimal) -> Decimal:
    """`value` without trailing fractional zeros (same value; in the exact context, so never rounded); 0 for -0."""
    return _ZERO if value == 0 else value.normalize(context=EXACT)


def _parse(tag: str) -> Locale | None:
    try:
        return Locale.parse(tag)
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def choose_locale(buyer: Party | None, default: str = DEFAULT_LOCALE) -> str:
    """The buyer's locale: language and country (de + AT -> de_AT), else the country's main language
    (CLDR likely subtags: DE -> de_DE, US -> en_US, CH -> de_CH), else the language alone, else `default`."""
    language = (buyer.language or "").strip() if buyer else ""
    country = ((buyer.address.country or "") if buyer and buyer.address else "").strip().upper()
    candidates = []
    if language and country:
        candidates.append(f"{language}_{country}")
    if country:
        candidates.append(f"und_{country}")
    if language:
        candidates.append(language)
    for tag in candidates:
        found = _parse(tag)
        if found is not None:
            return str(found)
    return default


class Formatter:
    """Formatting in one locale for one document (its currency and time zone)."""

    def __init__(self, locale: str, currency: str, timezone: str = "UTC") -> None:
        parsed = _parse(locale)
        if parsed is None:
            raise ValueError(f"locale: {locale!r} is not a locale babel knows (e.g. en_US, de_DE)")
        self.locale = str(parsed)
        self.currency = currency
        self.zone = ZoneInfo(timezone)
        self._territories = parsed.territories
        self._parsed = parsed
        digits = minor_units(currency)
        self._money = copy.copy(parsed.currency_formats["standard"])  # the locale's pattern, ISO minor digits
        self._money.frac_prec = (digits, digits)

    def money(self, amount: Decimal) -> str:
        """An amount in the document's currency: 1.234,56 € (de_DE), $1,234.56 (en_US); all its digits, and at
        least the currency's ISO 4217 minor digits (CLDR gives 16 currencies fewer, e.g. HUF 0: 1,234.50 would
        print as 1,234.5)."""
        with localcontext(ROUNDING):  # babel computes in the current context: 28 digits would fail on 38
            return self._money.apply(_plain(amount), self._parsed, currency=self.currency, currency_digits=False,
                                     decimal_quantization=False)  # fmt: skip

    def number(self, value: Decimal) -> str:
        """A quantity with the locale's grouping and decimal sign, every significant digit kept (a stored scale's
        trailing zeros are not printed: 1000.000000 -> 1,000)."""
        with localcontext(ROUNDING):
            return format_decimal(_plain(value), locale=self.locale, decimal_quantization=False)

    def percent(self, fraction: Decimal) -> str:
        """A rate given as a fraction: 0.20 -> 20 % (de_DE), 20% (en_US); 0.055 -> 5.5%."""
        with localcontext(ROUNDING):
            return format_percent(fraction, locale=self.locale, decimal_quantization=False)

    def date(self, day: date | None) -> str:
        return "" if day is None else format_date(day, "long", locale=self.locale)

    def local_day(self, at: datetime) -> date:
        return at.astimezone(self.zone).date()

    def span(self, start: datetime | None, end: datetime | None) -> str:
        """[start, end) as the local days it covers: Nov 1 – 30, 2026 (the end instant is exclusive)."""
        if start is None or end is None:
            return ""
        first, last = self.local_day(start), self.local_day(end - _TICK)
        if first == last:
            return format_date(first, "medium", locale=self.locale)
        return format_interval(first, last, "yMMMd", locale=self.locale)

    def country(self, code: str | None) -> str:
        if not code:
            return ""
        return self._territories.get(code.upper(), code.upper())

    def address_lines(self, address: Address | None) -> list[str]:
        """Postal lines: street lines, postal code and city, state, country name in the document's language."""
        if address is None:
            return []
        if (address.country or "").upper() in _CITY_STATE_POSTAL:  # Austin, TX 78701
            city = ", ".join(x for x in (address.city, " ".join(y for y in (address.state, address.postal_code) if y))
                             if x)  # fmt: skip
            lines = [address.line1, address.line2, city, self.country(address.country)]
        else:  # 20457 Hamburg
            city = " ".join(x for x in (address.postal_code, address.city) if x)
            lines = [address.line1, address.line2, city, address.state, self.country(address.country)]
        return [x for x in lines if x]


def formatter_for(doc: InvoiceDoc, locale: str | None = None) -> Formatter:
    """A formatter for `doc`: in `locale`, else the buyer's (`choose_locale`)."""
    return Formatter(locale or choose_locale(doc.buyer), doc.currency, doc.timezone)
