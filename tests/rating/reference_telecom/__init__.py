"""FROZEN reference: the telecom rater exactly as it was before the throughput work of issue #12.

Test code only (never imported by runtime code). The differential test
(tests/rating/telecom/test_telecom_differential.py) requires the runtime
``meterstream.rating.telecom.rate_cdr`` to return identical results, field by field,
and bench/telecom_rating.py times both in one run. Do not "fix" or speed up this copy:
it is the yardstick. Copied from rating/telecom/{rater,compiled,prefixes,timebands,errors}.py
at commit cdb0286 (bundles, increments and rounding were not touched by that work and are imported
from the runtime package; copy them here before changing them there), with imports made relative,
the decimal contexts copied into ``_money.py`` and the compiled plan cached here
(keyed by the plan object) instead of on the plan. The plan model (parsing,
validation) is the runtime one: it is the input, not the pricing.
"""

from .errors import NoRate
from .rater import RatedCDR, Segment, rate_cdr

__all__ = ["NoRate", "RatedCDR", "Segment", "rate_cdr"]
