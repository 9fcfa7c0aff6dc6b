"""The tenant statement check on `EXPLAIN AST` dumps (pure: the dumps below are ClickHouse 26.9's, copied from
chdb; the end-to-end refusals through the front are in tests/aggregation/test_http_front_tenants.py)."""

from __future__ import annotations

import pytest

from meterstream.aggregation.tenant_access import Catalogue, Refused, check, check_setting, filters_setting, parse_ast

CAT = Catalogue("meterstream", frozenset({"rated_usage", "usage_daily"}),
                frozenset({"rated_usage", "usage_daily", "period_closes"}))  # fmt: skip

SELECT_T = """SelectWithUnionQuery (children 1)
 ExpressionList (children 1)
  SelectQuery (children 2)
   ExpressionList (children 1)
    Asterisk
   TablesInSelectQuery (children 1)
    TablesInSelectQueryElement (children 1)
     TableExpression (children 1)
      TableIdentifier {name}
"""


@pytest.mark.parametrize("name", ["rated_usage", "meterstream.usage_daily", "system.numbers", "my_cte",
                                  "rated_usage (alias r)"])  # fmt: skip
def test_allowed_tables(name: str) -> None:
    check(parse_ast(SELECT_T.format(name=name)), CAT)


@pytest.mark.parametrize("name", ["period_closes", "meterstream.period_closes", "other.t", "system.parts",
                                  "meterstream.nosuch", "a b"])  # fmt: skip
def test_refused_tables(name: str) -> None:
    with pytest.raises(Refused) as err:
        check(parse_ast(SELECT_T.format(name=name)), CAT)
    assert err.value.code == 497


def test_a_forged_line_breaks_the_children_counts() -> None:
    # a table named "rated_usage\n      TableIdentifier other.t" would print as two lines
    with pytest.raises(Refused, match="not well formed"):
        parse_ast(SELECT_T.format(name="rated_usage\n      TableIdentifier other.t"))
    # ... and a forged child, counts and all, hangs under an identifier
    forged = SELECT_T.format(name="rated_usage (children 1)\n       TableIdentifier other.t")
    with pytest.raises(Refused, match="not well formed"):
        check(parse_ast(forged), CAT)


def test_settings_in_sql_and_pinned_settings_are_refused() -> None:
    dump = SELECT_T.format(name="rated_usage").replace("SelectQuery (children 2)", "SelectQuery (children 3)")
    with pytest.raises(Refused, match="SETTINGS"):
        check(parse_ast(dump + "   Set\n"), CAT)
    with pytest.raises(Refused) as err:
        check_setting("additional_table_filters", {})
    assert err.value.code == 452
    with pytest.raises(Refused):  # under an alias
        check_setting("allow_experimental_analyzer_filters", {"allow_experimental_analyzer_filters": "dialect"})
    check_setting("max_threads", {})


def test_the_filters_quote_the_tenant(chdb_client) -> None:  # type: ignore[no-untyped-def]
    tenant = "o'b\\`x"
    chdb_client.command(filters_setting("meterstream", ["rated_usage"], tenant))  # as the front sets it up
    try:
        [(where,)] = chdb_client.query("SELECT getSetting('additional_table_filters')['meterstream.rated_usage']"
                                       ).result_rows  # fmt: skip
    finally:
        chdb_client.command("SET additional_table_filters = {}")  # the session's client is shared
    assert where == "tenant = 'o\\'b\\\\`x'"
    # and the filter selects exactly that tenant
    assert chdb_client.command(f"SELECT count() FROM (SELECT {{t:String}} AS tenant) WHERE {where}",
                               parameters={"t": tenant}) == 1  # fmt: skip
    assert chdb_client.command(f"SELECT count() FROM (SELECT 'o' AS tenant) WHERE {where}") == 0
