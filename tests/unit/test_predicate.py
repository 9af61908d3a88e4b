"""The ``--where`` expression language (lifelong_cli.data.predicate)."""

from __future__ import annotations

import ast
import builtins
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lifelong_cli.data.predicate as predicate_module
from lifelong_cli.data.predicate import (
    MAX_DEPTH,
    MAX_IN_LITERALS,
    MAX_LENGTH,
    And,
    Comparison,
    InList,
    IsNull,
    Not,
    Or,
    Predicate,
    parse,
)
from lifelong_cli.errors import ExpressionError, UsageError

SCHEMA = {
    "x": "int",
    "y": "int",
    "score": "float",
    "source": "string",
    "label": "bool",
    "event_time": "timestamp",
    "odd name": "string",
    "in": "int",
    "tick`col": "int",
}


def p(text: str) -> Predicate:
    return parse(text, SCHEMA)


def error_of(text: str, columns=SCHEMA) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        parse(text, columns)
    return info.value


def x_eq(n: int) -> Comparison:
    return Comparison("x", "=", n)


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


def test_not_binds_tighter_than_and() -> None:
    assert p("not x = 1 and x = 2").root == And((Not(x_eq(1)), x_eq(2)))


def test_and_binds_tighter_than_or() -> None:
    assert p("x = 1 or x = 2 and x = 3").root == Or((x_eq(1), And((x_eq(2), x_eq(3)))))


def test_not_and_or_precedence_combined() -> None:
    assert p("not x = 1 or x = 2 and not x = 3").root == Or((Not(x_eq(1)), And((x_eq(2), Not(x_eq(3))))))


def test_parentheses_override_precedence() -> None:
    assert p("(x = 1 or x = 2) and x = 3").root == And((Or((x_eq(1), x_eq(2))), x_eq(3)))


def test_not_applies_to_a_parenthesised_group() -> None:
    assert p("not (x = 1 or x = 2)").root == Not(Or((x_eq(1), x_eq(2))))


def test_chain_of_or_is_one_flat_node() -> None:
    assert p("x = 1 or x = 2 or x = 3").root == Or((x_eq(1), x_eq(2), x_eq(3)))


def test_redundant_parentheses_do_not_change_the_tree() -> None:
    assert p("((x = 1))") == p("x = 1")


def test_double_not_is_kept() -> None:
    assert p("not not x = 1").root == Not(Not(x_eq(1)))


@pytest.mark.parametrize(
    ("op", "canonical"),
    [("=", "="), ("==", "="), ("!=", "!="), ("<>", "!="), ("<", "<"), ("<=", "<="), (">", ">"), (">=", ">=")],
)
def test_every_comparison_operator_parses_to_its_canonical_op(op: str, canonical: str) -> None:
    assert p(f"x {op} 5").root == Comparison("x", canonical, 5)


def test_operators_need_no_surrounding_spaces() -> None:
    assert p("x>=-5").root == Comparison("x", ">=", -5)


def test_in_list_keeps_values_in_order() -> None:
    assert p("x in (3, 1, 2)").root == InList("x", (3, 1, 2), negated=False)


def test_not_in_parses_as_negated_in_list() -> None:
    assert p("x not in (1)").root == InList("x", (1,), negated=True)


def test_is_null_parses() -> None:
    assert p("source is null").root == IsNull("source", negated=False)


def test_is_not_null_parses() -> None:
    assert p("source is not null").root == IsNull("source", negated=True)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r"source = 'it\'s'", "it's"),
        (r'source = "say \"hi\""', 'say "hi"'),
        (r"source = 'back\\slash'", "back\\slash"),
        (r"source = 'mixed \" inside single'", 'mixed " inside single'),
        (r"""source = "mixed ' inside double" """, "mixed ' inside double"),
        ("source = ''", ""),
        ("source = 'caf\u00e9 \u2603'", "caf\u00e9 \u2603"),
    ],
)
def test_quoted_strings_decode_their_escapes(text: str, value: str) -> None:
    assert p(text).root == Comparison("source", "=", value)


def test_backtick_column_allows_spaces() -> None:
    assert p("`odd name` = 'a'").root == Comparison("odd name", "=", "a")


def test_backtick_column_allows_a_keyword_name() -> None:
    assert p("`in` in (1)").root == InList("in", (1,))


def test_doubled_backtick_is_a_literal_backtick_in_a_column_name() -> None:
    assert p("`tick``col` = 1").root == Comparison("tick`col", "=", 1)


def test_backtick_quoting_a_plain_name_is_the_same_column() -> None:
    assert p("`x` = 1") == p("x = 1")


def test_keywords_are_case_insensitive() -> None:
    assert p("NOT x = 1 AnD source Is NoT NuLL oR x NOT IN (1) Or label = TRUE") == p(
        "not x = 1 and source is not null or x not in (1) or label = true"
    )


def test_column_names_are_case_sensitive() -> None:
    err = error_of("X = 1")
    assert err.position == 0
    assert "did you mean 'x'" in (err.hint or "")


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("5", 5.0),
        ("-5", -5.0),
        ("+5", 5.0),
        ("1e3", 1000.0),
        ("1.5", 1.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("-2.5E-3", -0.0025),
    ],
)
def test_number_literal_forms_parse(literal: str, value: float) -> None:
    assert p(f"score = {literal}").root == Comparison("score", "=", value)


def test_int_literal_on_float_column_becomes_float() -> None:
    value = p("score = 2").root.value
    assert isinstance(value, float)
    assert value == 2.0


def test_whole_float_literal_on_int_column_becomes_int() -> None:
    value = p("x = 1e3").root.value
    assert isinstance(value, int)
    assert value == 1000


def test_bool_literals_parse() -> None:
    assert p("label = true or label != FALSE").root == Or(
        (Comparison("label", "=", True), Comparison("label", "!=", False))
    )


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("'2026-01-02T03:04:05Z'", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("'2026-01-02'", datetime(2026, 1, 2, tzinfo=UTC)),
        ("'2026-01-02T03:04:05'", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("'2026-01-02T05:04:05+02:00'", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("'2026-01-02 03:04:05.250Z'", datetime(2026, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)),
    ],
)
def test_timestamp_literals_parse_to_utc(literal: str, expected: datetime) -> None:
    value = p(f"event_time >= {literal}").root.value
    assert value == expected
    assert value.utcoffset() == timedelta(0)


def test_columns_lists_every_referenced_column() -> None:
    assert p("x = 1 and (not source is null or `odd name` in ('a'))").columns() == frozenset(
        {"x", "source", "odd name"}
    )


def test_predicate_is_immutable() -> None:
    pred = p("x = 1")
    with pytest.raises(AttributeError):
        pred.root = x_eq(2)  # type: ignore[misc]


def test_equal_predicates_hash_equal() -> None:
    assert hash(p("x = 1 and source = 'a'")) == hash(p("x==1 AND source='a'"))


def test_unknown_column_type_in_schema_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse("x = 1", {"x": "integer"})  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------------
# Errors: every one is an ExpressionError at the exact 0-based position
# ---------------------------------------------------------------------------------------------

ERROR_CASES = [
    ("empty", "", 0),
    ("only_whitespace", "   \t ", 0),
    ("unknown_column", "nope = 1", 0),
    ("unknown_column_later", "x = 1 and nope = 2", 10),
    ("unknown_backtick_column", "x = 1 or `no pe` = 1", 9),
    ("second_operator", "x = = 1", 4),
    ("missing_operator", "x 1", 2),
    ("end_after_operator", "x =", 3),
    ("end_after_and", "x = 1 and", 9),
    ("unterminated_single_quote", "source = 'abc", 9),
    ("unterminated_double_quote", 'source = "abc', 9),
    ("unterminated_after_escaped_quote", r"source = 'abc\'", 9),
    ("unknown_escape", r"source = 'a\nb'", 11),
    ("unterminated_backtick", "`odd name = 1", 0),
    ("empty_backticks", "`` = 1", 0),
    ("trailing_comparison", "x = 1 x = 2", 6),
    ("trailing_close_paren", "x = 1)", 5),
    ("unclosed_paren", "(x = 1", 6),
    ("empty_parens", "()", 1),
    ("string_for_int", "x = 'a'", 4),
    ("number_for_string", "source = 1", 9),
    ("number_for_bool", "label = 1", 8),
    ("string_for_bool", "label = 'true'", 8),
    ("bool_for_int", "x = true", 4),
    ("number_for_timestamp", "event_time = 5", 13),
    ("bad_timestamp", "event_time < 'yesterday'", 13),
    ("string_for_float", "score = 'a'", 8),
    ("mixed_in_list", "x in (1, 'a')", 9),
    ("fraction_for_int", "x = 1.5", 4),
    ("int64_overflow", "x = 9223372036854775808", 4),
    ("float_overflow", "score = 1e999", 8),
    ("empty_in_list", "x in ()", 6),
    ("empty_not_in_list", "x not in ( )", 11),
    ("in_without_paren", "x in 1", 5),
    ("trailing_comma_in_list", "x in (1,)", 8),
    ("not_without_in", "x not = 1", 6),
    ("is_without_null", "x is 1", 5),
    ("compare_with_null", "x = null", 4),
    ("null_in_list", "x in (1, null)", 9),
    ("ordering_on_bool", "label < true", 6),
    ("bad_character", "x = 1 & y = 2", 6),
    ("bang_alone", "x ! 1", 2),
    ("lone_minus", "x = - 1", 4),
    ("malformed_number", "x = 1abc", 4),
    ("number_glued_to_keyword", "x = 1and y = 2", 4),
    ("keyword_as_column", "in = 1", 0),
    ("literal_on_left", "1 = x", 0),
    ("column_compared_to_column", "x = y", 4),
]


@pytest.mark.parametrize(("text", "position"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_malformed_expression_raises_expression_error_at_exact_position(text: str, position: int) -> None:
    assert error_of(text).position == position


def test_expression_error_is_a_usage_error_with_exit_code_2() -> None:
    err = error_of("nope = 1")
    assert isinstance(err, UsageError)
    assert err.exit_code == 2


def test_expression_error_carries_a_caret_under_the_position() -> None:
    err = error_of("x = 1 and nope = 2")
    assert err.details["caret"] == "x = 1 and nope = 2\n          ^"
    assert err.message.endswith("at position 10")


def test_unknown_column_error_names_the_column_and_lists_allowed_columns() -> None:
    err = error_of("sorce = 'a'")
    assert "'sorce'" in err.message
    assert "did you mean 'source'" in (err.hint or "")
    for name in ("x", "score", "source", "`odd name`"):
        assert name in (err.hint or "")


def test_unterminated_string_error_says_so() -> None:
    assert "unterminated string" in error_of("source = 'abc").message


def test_type_mismatch_error_names_column_and_type() -> None:
    err = error_of("x = 'a'")
    assert "'x'" in err.message
    assert "int" in err.message


def test_compare_with_null_hints_at_is_null() -> None:
    assert "IS NULL" in (error_of("x = null").hint or "")


def test_keyword_named_column_hint_suggests_backticks() -> None:
    assert "`in`" in (error_of("in = 1").hint or "")


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------


def test_expression_longer_than_limit_is_rejected_at_position_4096() -> None:
    text = "x = 1 or " * 555 + "x = 1"  # 5000 characters
    assert len(text) == 5000
    err = error_of(text)
    assert err.position == MAX_LENGTH == 4096
    assert "too long" in err.message


def test_expression_of_exactly_the_length_limit_is_accepted() -> None:
    text = "x = 1" + " " * (MAX_LENGTH - 5)
    assert len(text) == MAX_LENGTH
    assert p(text) == p("x = 1")


def test_nesting_of_64_parentheses_is_accepted() -> None:
    assert p("(" * MAX_DEPTH + "x = 1" + ")" * MAX_DEPTH) == p("x = 1")


def test_nesting_of_65_parentheses_is_rejected_at_the_65th() -> None:
    err = error_of("(" * 65 + "x = 1" + ")" * 65)
    assert err.position == 64
    assert "nested too deeply" in err.message


def test_not_keywords_count_towards_nesting_depth() -> None:
    err = error_of("not " * 65 + "x = 1")
    assert err.position == 4 * 64


def test_parentheses_and_not_together_count_towards_nesting_depth() -> None:
    err = error_of("not (" * 33 + "x = 1" + ")" * 33)
    assert err.position == 5 * 32  # the 33rd NOT opens level 65


def test_very_deep_nesting_within_length_limit_is_an_error_not_a_crash() -> None:
    err = error_of("(" * 2000 + "x = 1" + ")" * 2000)
    assert err.position == 64


def test_in_list_of_1000_literals_is_accepted() -> None:
    values = ",".join(["1"] * MAX_IN_LITERALS)
    assert len(p(f"x in ({values})").root.values) == 1000


def test_in_list_of_1001_literals_is_rejected_at_the_1001st() -> None:
    text = "x in (" + ",".join(["1"] * (MAX_IN_LITERALS + 1)) + ")"
    err = error_of(text)
    assert err.position == len("x in (") + 2 * MAX_IN_LITERALS
    assert "too many values" in err.message


# ---------------------------------------------------------------------------------------------
# Injection attempts: errors, or harmless literals
# ---------------------------------------------------------------------------------------------


def test_sql_statement_separator_is_an_error() -> None:
    err = error_of("x = 1; DROP TABLE batches")
    assert err.position == 5
    assert "';'" in err.message


def test_python_dunder_import_is_an_unknown_column() -> None:
    err = error_of("__import__('os')")
    assert err.position == 0
    assert "unknown column '__import__'" in err.message


def test_sql_tautology_with_comment_is_an_error() -> None:
    assert error_of("x = 1 or 1=1 --").position == 9


def test_quote_breakout_after_column_is_an_error() -> None:
    assert error_of("x' OR '1'='1").position == 1


def test_quote_breakout_inside_comparison_is_an_error() -> None:
    assert error_of("source = 'x' OR '1'='1'").position == 16


def test_escaped_quote_breakout_is_one_harmless_string_literal() -> None:
    pred = p(r"source = 'x\' OR \'1\'=\'1'")
    assert pred.root == Comparison("source", "=", "x' OR '1'='1")
    table = pa.table({"source": ["x", "1", "x' OR '1'='1", None]})
    assert pred.mask(table).to_pylist() == [False, False, True, False]


def test_sql_inside_a_string_literal_only_matches_that_exact_text() -> None:
    pred = p("source = '; DROP TABLE batches; --'")
    assert pred.matches({"source": "; DROP TABLE batches; --"})
    assert not pred.matches({"source": "anything else"})


def test_python_code_inside_a_string_literal_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    called = []
    monkeypatch.setattr("os.system", lambda *a: called.append(a))
    pred = p("source = \"__import__('os').system('touch /tmp/pwned')\"")
    pred.matches({"source": "x"})
    pred.mask(pa.table({"source": ["x"]}))
    assert called == []


def test_5000_char_input_is_rejected_quickly() -> None:
    err = error_of("(" * 5000)
    assert err.position == 4096


def test_control_characters_are_errors() -> None:
    assert error_of("x = 1\x00").position == 5


def test_parse_and_evaluate_never_call_eval_exec_or_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    table = pa.table({"x": [1, 2, None], "source": ["a", "b", None]})

    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec/compile called")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    pred = p("x in (1, 2) and not source = 'a' or source is null")
    pred2 = Predicate.from_dict(pred.to_dict(), SCHEMA)
    result = pred.mask(table).to_pylist()
    rows = [pred.matches(r) for r in table.to_pylist()]
    monkeypatch.undo()
    assert pred2 == pred
    assert result == rows == [False, True, True]


def _module_level_imports(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


def test_module_imports_only_stdlib_and_errors_at_module_level() -> None:
    tree = ast.parse(Path(predicate_module.__file__).read_text())
    for name in _module_level_imports(tree):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or name == "lifelong_cli.errors", name


def test_module_source_uses_no_eval_exec_compile_or_dynamic_import() -> None:
    tree = ast.parse(Path(predicate_module.__file__).read_text())
    calls = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call)]
    names = {f.id for f in calls if isinstance(f, ast.Name)}
    attrs = {
        (f.value.id if isinstance(f.value, ast.Name) else "?", f.attr)
        for f in calls
        if isinstance(f, ast.Attribute)
    }
    assert not names & {"eval", "exec", "compile", "__import__", "getattr"}
    assert {a for _, a in attrs} & {"eval", "exec", "import_module", "field", "Expression"} == set()
    assert {owner for owner, a in attrs if a == "compile"} <= {"re"}  # regexes only


def test_importing_the_module_does_not_import_pyarrow() -> None:
    code = "import sys, lifelong_cli.data.predicate; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------
# Round trip: canonical text and dict form
# ---------------------------------------------------------------------------------------------

ROUND_TRIP = [
    "x = 1",
    "x == -7 or y <> 3",
    "not x = 1 and y >= 2 or score < 0.5",
    "(x = 1 or x = 2) and not (y = 3 and y = 4)",
    "((x = 1 and y = 1) and y = 2) or (x = 3 or x = 4)",
    "not not not x = 1",
    "x in (1, 2, 3) and y not in (-1)",
    "source is null or `odd name` is not null",
    r"source = 'it\'s' or source = 'back\\slash' or source = 'q\"'",
    "`in` = 1 and `tick``col` != 2",
    "label = true or label != false",
    "event_time >= '2026-01-02' and event_time < '2026-01-02T03:04:05.123456+05:30'",
    "event_time in ('2026-01-01', '2026-01-02T00:00:00Z')",
    "score > 1e300 or score < -2.5e-10 or score = -0.0",
    "x = 9223372036854775807 or x = -9223372036854775808",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_canonical_text_parses_back_to_an_equal_predicate(text: str) -> None:
    pred = p(text)
    assert p(str(pred)) == pred


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_dict_form_survives_json_and_rebuilds_an_equal_predicate(text: str) -> None:
    pred = p(text)
    stored = json.loads(json.dumps(pred.to_dict()))
    assert Predicate.from_dict(stored, SCHEMA) == pred


def test_canonical_text_uses_upper_case_keywords_and_minimal_parentheses() -> None:
    pred = p("((x==1)) and (y<>2 or not `odd name` is null) and label in (TRUE)")
    assert str(pred) == "x = 1 AND (y != 2 OR NOT `odd name` IS NULL) AND label IN (TRUE)"


def test_canonical_text_writes_timestamps_as_utc_iso_strings() -> None:
    assert str(p("event_time > '2026-01-02T05:00:00+02:00'")) == "event_time > '2026-01-02T03:00:00Z'"


def test_repr_shows_the_canonical_text() -> None:
    assert repr(p("x=1")) == "Predicate('x = 1')"


def test_to_dict_records_version_text_and_tree() -> None:
    d = p("x in (1, 2) and not source is null").to_dict()
    assert d == {
        "version": 1,
        "text": "x IN (1, 2) AND NOT source IS NULL",
        "expr": {
            "kind": "and",
            "operands": [
                {"kind": "in", "column": "x", "values": [1, 2], "negated": False},
                {"kind": "not", "operand": {"kind": "is_null", "column": "source", "negated": False}},
            ],
        },
    }


def test_from_dict_rejects_a_column_missing_from_the_current_schema() -> None:
    d = p("x = 1 and source = 'a'").to_dict()
    with pytest.raises(ExpressionError) as info:
        Predicate.from_dict(d, {"x": "int"})
    assert "unknown column 'source'" in info.value.message
    assert info.value.position == len("x = 1 AND ")


def test_from_dict_rejects_a_literal_that_no_longer_fits_the_column_type() -> None:
    d = p("source = 'a'").to_dict()
    with pytest.raises(ExpressionError):
        Predicate.from_dict(d, {"source": "int"})


def test_from_dict_accepts_a_predicate_whose_canonical_text_exceeds_the_length_limit() -> None:
    text = "event_time in (" + ",".join(["'2026-01-02'"] * 300) + ")"
    pred = p(text)
    assert len(text) < MAX_LENGTH < len(str(pred))
    assert Predicate.from_dict(pred.to_dict(), SCHEMA) == pred


@pytest.mark.parametrize(
    "d",
    [
        {},
        {"version": 2, "expr": {"kind": "is_null", "column": "x"}},
        {"version": 1},
        {"version": 1, "expr": {"kind": "xor", "operands": []}},
        {"version": 1, "expr": {"kind": "compare", "column": "x", "op": "~", "value": 1}},
        {"version": 1, "expr": {"kind": "compare", "column": "x", "op": "=", "value": [1]}},
        {"version": 1, "expr": {"kind": "compare", "column": "x", "op": "=", "value": float("nan")}},
        {"version": 1, "expr": {"kind": "in", "column": "x", "values": "1"}},
        {"version": 1, "expr": {"kind": "and", "operands": [{"kind": "is_null", "column": "x"}]}},
        {"version": 1, "expr": {"kind": "is_null", "column": 3}},
        {"version": 1, "expr": {"kind": "is_null", "column": "x", "negated": "yes"}},
        {"version": 1, "expr": {"kind": "in", "column": "x", "values": []}},
        {"version": 1, "expr": {"kind": "compare", "column": "x", "op": "=", "value": "1 or 1=1"}},
    ],
)
def test_from_dict_rejects_malformed_stored_forms(d: dict) -> None:
    with pytest.raises(ExpressionError):
        Predicate.from_dict(d, SCHEMA)


def test_from_dict_rejects_absurdly_deep_stored_trees_without_recursion_error() -> None:
    node: dict = {"kind": "is_null", "column": "x"}
    for _ in range(5000):
        node = {"kind": "not", "operand": node}
    with pytest.raises(ExpressionError):
        Predicate.from_dict({"version": 1, "expr": node}, SCHEMA)


# ---------------------------------------------------------------------------------------------
# Evaluation semantics
# ---------------------------------------------------------------------------------------------


def both(pred: Predicate, table: pa.Table) -> list[bool]:
    """mask and matches must agree; return the agreed result."""
    mask = pred.mask(table)
    assert isinstance(mask, pa.BooleanArray)
    assert mask.null_count == 0
    rows = [pred.matches(r) for r in table.to_pylist()]
    assert mask.to_pylist() == rows
    return rows


NULLY = pa.table(
    {
        "x": pa.array([1, None, 3], pa.int64()),
        "score": pa.array([0.0, float("nan"), None], pa.float64()),
        "source": pa.array(["a", None, "b"]),
        "label": pa.array([True, None, False]),
    }
)


def test_comparison_with_null_does_not_match() -> None:
    assert both(p("x = 1"), NULLY) == [True, False, False]
    assert both(p("x != 1"), NULLY) == [False, False, True]


def test_not_of_a_comparison_with_null_matches() -> None:
    assert both(p("not x = 1"), NULLY) == [False, True, True]


def test_not_in_does_not_match_null() -> None:
    assert both(p("x not in (1)"), NULLY) == [False, False, True]


def test_in_does_not_match_null() -> None:
    assert both(p("source in ('a', 'b')"), NULLY) == [True, False, True]


def test_is_null_matches_only_nulls() -> None:
    assert both(p("x is null"), NULLY) == [False, True, False]
    assert both(p("x is not null"), NULLY) == [True, False, True]


def test_nan_is_not_null() -> None:
    assert both(p("score is null"), NULLY) == [False, False, True]


def test_nan_compares_unequal_to_everything() -> None:
    assert both(p("score != 0"), NULLY) == [False, True, False]
    assert both(p("score >= 0"), NULLY) == [True, False, False]


def test_negative_zero_equals_zero_in_comparisons_and_lists() -> None:
    table = pa.table({"score": pa.array([-0.0, 0.0, 1.0])})
    assert both(p("score = 0"), table) == [True, True, False]
    assert both(p("score in (-0.0)"), table) == [True, True, False]
    assert both(p("score not in (0.0)"), table) == [False, False, True]


def test_bool_column_comparisons() -> None:
    assert both(p("label = true"), NULLY) == [True, False, False]
    assert both(p("label != true"), NULLY) == [False, False, True]


def test_and_or_combine_row_results() -> None:
    assert both(p("x = 1 or source = 'b'"), NULLY) == [True, False, True]
    assert both(p("x is null and source is null"), NULLY) == [False, True, False]


def test_string_ordering_is_by_code_point() -> None:
    table = pa.table({"source": ["a", "B", "\u00e9", "\U0001f600", ""]})
    assert both(p("source > 'a'"), table) == [False, False, True, True, False]


def test_column_missing_from_table_counts_as_null() -> None:
    table = pa.table({"x": [1, 2]})
    assert both(p("source = 'a'"), table) == [False, False]
    assert both(p("source is null"), table) == [True, True]
    assert both(p("source not in ('a')"), table) == [False, False]
    assert both(p("not source = 'a'"), table) == [True, True]


def test_row_missing_a_key_counts_as_null() -> None:
    assert p("source is null").matches({})
    assert not p("source = 'a'").matches({})


def test_mask_of_an_empty_table_is_empty() -> None:
    table = pa.table({"x": pa.array([], pa.int64())})
    result = p("x = 1 or x is null").mask(table)
    assert isinstance(result, pa.BooleanArray)
    assert len(result) == 0


def test_mask_of_a_multi_chunk_table_is_one_array() -> None:
    table = pa.concat_tables([pa.table({"x": [1, 2]}), pa.table({"x": [None, 1]})])
    assert table.column("x").num_chunks == 2
    result = p("x = 1").mask(table)
    assert isinstance(result, pa.BooleanArray)
    assert result.to_pylist() == [True, False, False, True]


def test_mask_filters_a_table_with_pyarrow() -> None:
    table = pa.table({"x": [1, 2, 3]})
    assert table.filter(pc.invert(p("x >= 2").mask(table))).column("x").to_pylist() == [1]


def test_mask_accepts_narrow_int_and_float_column_types() -> None:
    table = pa.table(
        {"x": pa.array([1, 2, None], pa.int8()), "score": pa.array([0.5, 1.5, None], pa.float32())}
    )
    assert both(p("x in (2, 9223372036854775807)"), table) == [False, True, False]
    assert both(p("score in (1.5) or x = 1"), table) == [True, True, False]


def test_mask_accepts_dictionary_and_large_string_columns() -> None:
    table = pa.table(
        {
            "source": pa.array(["a", "b", None]).dictionary_encode(),
            "odd name": pa.array(["a", None, "c"], pa.large_string()),
        }
    )
    assert both(p("source = 'a' or `odd name` in ('c')"), table) == [True, False, True]


TS = [datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), None]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "Asia/Kolkata"])
def test_timestamp_columns_of_any_unit_and_zone_compare_as_utc(unit: str, tz: str | None) -> None:
    values = [v.replace(tzinfo=None) if (v and tz is None) else v for v in TS]
    table = pa.table({"event_time": pa.array(values, pa.timestamp(unit, tz=tz))})
    assert both(p("event_time = '2026-01-02'"), table) == [True, False, False]
    assert both(p("event_time > '2026-01-02T08:30:00+05:30'"), table) == [False, True, False]
    assert both(p("event_time in ('2026-01-02T03:04:05Z', '1999-01-01')"), table) == [False, True, False]
    assert both(p("event_time not in ('2026-01-02T03:04:05.5Z')"), table) == [True, True, False]


def test_matches_accepts_iso_strings_for_timestamp_columns() -> None:
    assert p("event_time < '2026-01-02'").matches({"event_time": "2026-01-01T23:59:59Z"})
    assert not p("event_time < '2026-01-02'").matches({"event_time": "not a time"})


def test_matches_treats_a_value_of_the_wrong_type_as_not_matching() -> None:
    assert not p("x < 3").matches({"x": "two"})


# ---------------------------------------------------------------------------------------------
# Property: random expressions over random tables with nulls — mask agrees with matches
# ---------------------------------------------------------------------------------------------

PROP_SCHEMA = {"i": "int", "f": "float", "s": "string", "b": "bool", "t": "timestamp", "odd col": "string"}

INTS = st.one_of(st.integers(-3, 3), st.sampled_from([-(2**63), 2**63 - 1, 2**53 + 1]))
FLOATS = st.one_of(
    st.sampled_from([-1.5, -0.0, 0.0, 0.5, 1.0, 2.25, 1e300]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)
TEXT = st.one_of(
    st.sampled_from(["", "a", "b", "ab", "B", "it's", 'q"', "back\\slash", "\u00e9", "\U0001f600"]),
    st.text(alphabet="ab'\"\\ \u00e9", max_size=4),
)
TIMES = st.one_of(
    st.sampled_from(
        [
            datetime(2026, 1, 2, tzinfo=UTC),
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC),
            datetime(1970, 1, 1, tzinfo=UTC),
        ]
    ),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)).map(
        lambda d: d.replace(microsecond=d.microsecond // 250000 * 250000)
    ),
)

_SPACE = st.sampled_from([" ", "  ", "\t", "\n "])
_OPT_SPACE = st.sampled_from(["", " ", "  "])


def _keyword(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word.lower(), word.upper(), word.capitalize()])


def _quote(value: str) -> st.SearchStrategy[str]:
    single = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    double = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return st.sampled_from([single, double])


def _number_text(value: float | int) -> st.SearchStrategy[str]:
    forms = [repr(value)]
    if isinstance(value, int) and value >= 0:
        forms.append("+" + str(value))
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        forms.append(str(int(value)))
    return st.sampled_from(forms)


def _timestamp_text(value: datetime) -> st.SearchStrategy[str]:
    forms = [
        value.isoformat(),
        value.isoformat().replace("+00:00", "Z"),
        value.replace(tzinfo=None).isoformat(),
    ]
    forms.append(value.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat())
    if value == value.replace(hour=0, minute=0, second=0, microsecond=0):
        forms.append(value.date().isoformat())
    return st.sampled_from(forms).flatmap(_quote)


def _literal(ctype: str) -> st.SearchStrategy[str]:
    if ctype == "int":
        return INTS.flatmap(_number_text)
    if ctype == "float":
        return st.one_of(FLOATS, INTS.filter(lambda n: abs(n) < 2**53)).flatmap(_number_text)
    if ctype == "string":
        return TEXT.flatmap(_quote)
    if ctype == "bool":
        return st.sampled_from(["true", "FALSE", "True", "false"])
    return TIMES.flatmap(_timestamp_text)


def _column(name: str) -> st.SearchStrategy[str]:
    if name == "odd col":
        return st.just("`odd col`")
    return st.sampled_from([name, f"`{name}`"])


@st.composite
def _comparison(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(sorted(PROP_SCHEMA)))
    ctype = PROP_SCHEMA[name]
    col = draw(_column(name))
    form = draw(st.sampled_from(["op", "in", "null"]))
    if form == "op":
        ops = ["=", "==", "!=", "<>"] if ctype == "bool" else ["=", "==", "!=", "<>", "<", "<=", ">", ">="]
        op = draw(st.sampled_from(ops))
        return f"{col}{draw(_OPT_SPACE)}{op}{draw(_OPT_SPACE)}{draw(_literal(ctype))}"
    if form == "in":
        values = draw(st.lists(_literal(ctype), min_size=1, max_size=4))
        neg = draw(st.booleans())
        kw = (draw(_keyword("not")) + draw(_SPACE) if neg else "") + draw(_keyword("in"))
        return f"{col}{draw(_SPACE)}{kw}{draw(_OPT_SPACE)}({','.join(values)})"
    neg = draw(st.booleans())
    middle = draw(_keyword("not")) + draw(_SPACE) if neg else ""
    return f"{col}{draw(_SPACE)}{draw(_keyword('is'))}{draw(_SPACE)}{middle}{draw(_keyword('null'))}"


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(_keyword("not"), _SPACE, children).map("".join),
        st.tuples(children, _SPACE, _keyword("and"), _SPACE, children).map("".join),
        st.tuples(children, _SPACE, _keyword("or"), _SPACE, children).map("".join),
        st.tuples(_OPT_SPACE, children, _OPT_SPACE).map(lambda t: "(" + "".join(t) + ")"),
    )


EXPRESSIONS = st.recursive(_comparison(), _extend, max_leaves=8)

TIMESTAMP_TYPES = [(u, tz) for u in ("s", "ms", "us", "ns") for tz in (None, "UTC", "Asia/Kolkata")]


@st.composite
def _tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 12))

    def col(values: st.SearchStrategy) -> list:
        return draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))

    unit, tz = draw(st.sampled_from(TIMESTAMP_TYPES))
    times = [None if t is None else (t.replace(microsecond=0) if unit == "s" else t) for t in col(TIMES)]
    if tz is None:
        times = [None if t is None else t.replace(tzinfo=None) for t in times]
    float_values = st.one_of(FLOATS, st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    table = pa.table(
        {
            "i": pa.array(col(INTS), pa.int64()),
            "f": pa.array(col(float_values), pa.float64()),
            "s": pa.array(col(TEXT), pa.string()),
            "b": pa.array(col(st.booleans()), pa.bool_()),
            "t": pa.array(times, pa.timestamp(unit, tz=tz)),
            "odd col": pa.array(col(TEXT), pa.large_string()),
        }
    )
    if n > 1 and draw(st.booleans()):
        cut = draw(st.integers(1, n - 1))
        table = pa.concat_tables([table.slice(0, cut), table.slice(cut)])
    return table


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=EXPRESSIONS, table=_tables())
def test_property_mask_agrees_with_matches_on_every_row(text: str, table: pa.Table) -> None:
    pred = parse(text, PROP_SCHEMA)
    mask = pred.mask(table)
    assert isinstance(mask, pa.BooleanArray)
    assert mask.null_count == 0
    assert mask.to_pylist() == [pred.matches(row) for row in table.to_pylist()]


@settings(max_examples=300, deadline=None)
@given(text=EXPRESSIONS)
def test_property_generated_expressions_round_trip_through_text_and_dict(text: str) -> None:
    pred = parse(text, PROP_SCHEMA)
    assert parse(str(pred), PROP_SCHEMA) == pred
    assert str(parse(str(pred), PROP_SCHEMA)) == str(pred)
    assert Predicate.from_dict(json.loads(json.dumps(pred.to_dict())), PROP_SCHEMA) == pred


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60))
def test_property_arbitrary_text_parses_or_raises_expression_error(text: str) -> None:
    try:
        pred = parse(text, PROP_SCHEMA)
    except ExpressionError as err:
        assert 0 <= err.position <= len(text)
    else:
        assert parse(str(pred), PROP_SCHEMA) == pred
