"""Tax data shipped with Meterstream: EU standard VAT rates and the ISO 3166-1 country codes. Data only.

EU_STANDARD_VAT: the standard VAT rate of each of the 27 member states, as a fraction (0.20 = 20 %), keyed
by ISO 3166-1 alpha-2 code (Greece is GR here; its VAT numbers start with EL). Source: European Commission,
Taxes in Europe Database (TEDB), "VAT rates applied in the Member States of the European Union"; these
are the standard rates in force in 2026, including the changes since 2024: Estonia 24 %, Finland 25.5 %,
Romania 21 %, Slovakia 23 %. Rates change by national law: check them against TEDB
(https://ec.europa.eu/taxation_customs/tedb/) and override them in the tax table (docs/taxes.md), which
is also where reduced rates and sales-tax rates go (none are shipped).

ISO_COUNTRIES: the 249 officially assigned ISO 3166-1 alpha-2 codes, plus XK (Kosovo, user-assigned,
used by the European Commission). Anything else is an unknown country.
"""

from __future__ import annotations

__all__ = ["EU_MEMBER_STATES", "EU_STANDARD_VAT", "ISO_COUNTRIES", "SOURCE"]

SOURCE = "European Commission, Taxes in Europe Database (TEDB): standard VAT rates of the member states, 2026"

EU_STANDARD_VAT: dict[str, str] = {
    "AT": "0.20",
    "BE": "0.21",
    "BG": "0.20",
    "CY": "0.19",
    "CZ": "0.21",
    "DE": "0.19",
    "DK": "0.25",
    "EE": "0.24",
    "ES": "0.21",
    "FI": "0.255",
    "FR": "0.20",
    "GR": "0.24",
    "HR": "0.25",
    "HU": "0.27",
    "IE": "0.23",
    "IT": "0.22",
    "LT": "0.21",
    "LU": "0.17",
    "LV": "0.21",
    "MT": "0.18",
    "NL": "0.21",
    "PL": "0.23",
    "PT": "0.23",
    "RO": "0.21",
    "SE": "0.25",
    "SI": "0.22",
    "SK": "0.23",
}

EU_MEMBER_STATES: frozenset[str] = frozenset(EU_STANDARD_VAT)

ISO_COUNTRIES: frozenset[str] = frozenset(
    (
        "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV "
        "BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES "
        "ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE "
        "IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY "
        "MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU "
        "NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM "
        "SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE "
        "VG VI VN VU WF WS YE YT ZA ZM ZW XK"
    ).split()
)
