"""Gates for CI: `--check 'AdaptiveClient: slo_goodput_rps >= 0.9*capacity_rps'` on the summary.

A gate is `CLIENT: LEFT OP RIGHT` (or `*:` for every class; no prefix means `*`). Each side is
arithmetic (`+ - * /`, parentheses, unary minus) on numbers and the summary's numeric columns
(`capacity_rps` is one of them); OP is one of `>= <= > < == !=`. A text column (TEXT_COLUMNS, e.g.
`verdict == "stuck"`) is compared whole, with == or != only, against a quoted string; for `verdict` and
`recovered` the string must be one of their values (KNOWN_VALUES). The expression is parsed with `ast`
and only a whitelist of nodes is accepted, so nothing is ever `eval`ed; a bad expression is one line
naming the token. After the run, every gate is judged per class: a failed gate prints one line with the
measured values and the run exits 1; `--junit FILE` writes one JUnit test case per gate and class.
Anchor: k6 thresholds (`http_req_duration: ['p(99)<500']`), which fail the run with a non-zero code.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from comparison.metastable import VERDICTS
from comparison.scenarios import REGISTRY
from comparison.summary import COLUMNS, Summary

TEXT_COLUMNS = frozenset(
    {"client", "scenario", "server_error_kinds", "shed_kinds", "recovered", "verdict", "lost_workers"}
)
KNOWN_VALUES = {"verdict": VERDICTS, "recovered": ("yes", "no")}  # a typo here would always fail
# the shared numeric columns, then every scenario's own (comparison/scenarios/), which a run of another
# scenario leaves without a value
NUMERIC_COLUMNS = tuple(
    dict.fromkeys(
        name
        for name in (*COLUMNS, *(name for scenario in REGISTRY.values() for name in scenario.columns))
        if name not in TEXT_COLUMNS
    )
)
EVERY_CLIENT = "*"
MAX_GATE = 500
MAX_NUMBER = 1e300  # any column times any such number stays finite enough to compare

_COMPARE: dict[type, tuple[str, Callable[[float, float], bool]]] = {
    ast.GtE: (">=", operator.ge),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.Lt: ("<", operator.lt),
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
}
_ARITHMETIC: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_SYMBOL = {
    ast.Mod: "%", ast.Pow: "**", ast.FloorDiv: "//", ast.MatMult: "@", ast.LShift: "<<",
    ast.RShift: ">>", ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^", ast.Invert: "~", ast.Not: "not",
    ast.And: "and", ast.Or: "or", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
}  # fmt: skip
_PREFIX = re.compile(r"\s*(\*|[A-Za-z_][A-Za-z0-9_]*)\s*:(?!=)")


class GateError(ValueError):
    """A bad --check expression; the message names the token."""


@dataclass(frozen=True)
class Gate:
    """One parsed `--check`: which class (`*` for each), the two sides' text and trees, the operator."""

    text: str
    client: str
    left: str
    op: str
    right: str
    tree: ast.Compare

    @property
    def expression(self) -> str:
        return f"{self.left} {self.op} {self.right}"


def parse_gate(text: str) -> Gate:
    """`'AdaptiveClient: slo_goodput_rps >= 0.9*capacity_rps'` -> Gate. Raises GateError (one line)."""
    if len(text) > MAX_GATE:
        raise GateError(f"{text[:40]!r}…: longer than {MAX_GATE} characters")
    client, expression = EVERY_CLIENT, text
    found = _PREFIX.match(text)
    if found:
        client, expression = found.group(1), text[found.end() :]
    expression = expression.strip()
    if not expression:
        raise GateError(f"{text!r}: no expression after {client}:")
    try:
        tree = ast.parse(expression, mode="eval").body
    except SyntaxError as error:
        raise GateError(f"{text!r}: unexpected {_token_at(expression, error.offset)!r}") from None
    if not isinstance(tree, ast.Compare):
        raise GateError(f"{text!r}: no comparison; write e.g. 'slo_goodput_rps >= 0.9*capacity_rps'")
    if len(tree.ops) != 1:
        raise GateError(f"{text!r}: one comparison per gate, found {len(tree.ops)}")
    if type(tree.ops[0]) not in _COMPARE:
        raise GateError(f"{text!r}: {_SYMBOL.get(type(tree.ops[0]), 'that comparison')!r} is not allowed")
    if _check_text(tree, text) is None:
        for side in (tree.left, tree.comparators[0]):
            _check(side, expression, text)
    left = ast.get_source_segment(expression, tree.left) or ""
    right = ast.get_source_segment(expression, tree.comparators[0]) or ""
    return Gate(text, client, left.strip(), _COMPARE[type(tree.ops[0])][0], right.strip(), tree)


def _token_at(expression: str, offset: int | None) -> str:
    if not offset:  # Python reports an expression that ends too soon at offset 0
        return "end of expression"
    rest = expression[offset - 1 :].lstrip()
    found = re.match(r"[A-Za-z_0-9.]+|\S\S?", rest)
    return found.group(0) if found else "end of expression"


def text_operands(tree: ast.Compare) -> tuple[str, str] | None:
    """(text column, quoted value) when the gate is `COLUMN == "value"` (either way round), else None."""
    sides = (tree.left, tree.comparators[0])
    for column, value in (sides, sides[::-1]):
        is_column = isinstance(column, ast.Name) and column.id in TEXT_COLUMNS
        if is_column and isinstance(value, ast.Constant) and isinstance(value.value, str):
            return column.id, value.value
    return None


def _text_rule(column: str) -> str:
    values = KNOWN_VALUES.get(column)
    example = values[-1] if values else "..."
    allowed = f" ({', '.join(values)})" if values else ""
    return (
        f"{column} is a text column: only == or != against a quoted string{allowed}, "
        f'e.g. {column} == "{example}"'
    )


def _check_text(tree: ast.Compare, text: str) -> tuple[str, str] | None:
    """A gate on a text column is `COLUMN == "value"` or `!=`, nothing else; None when no side is a
    text column by itself (arithmetic on one is refused by _check)."""
    sides = (tree.left, tree.comparators[0])
    named = [side.id for side in sides if isinstance(side, ast.Name) and side.id in TEXT_COLUMNS]
    if not named:
        return None
    operands = text_operands(tree)
    if operands is None or not isinstance(tree.ops[0], ast.Eq | ast.NotEq):
        raise GateError(f"{text!r}: {_text_rule(named[0])}")
    column, value = operands
    if column in KNOWN_VALUES and value not in KNOWN_VALUES[column]:
        allowed = ", ".join(KNOWN_VALUES[column])
        raise GateError(f"{text!r}: {value!r} is not a value of {column}; use one of {allowed}")
    return operands


def _check(node: ast.AST, expression: str, text: str) -> None:
    """Only numbers, column names, + - * /, unary +/- and parentheses (which leave no node)."""
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _ARITHMETIC:
            raise GateError(f"{text!r}: {_SYMBOL.get(type(node.op), 'that operator')!r} is not allowed")
        _check(node.left, expression, text)
        _check(node.right, expression, text)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.UAdd | ast.USub):
            raise GateError(f"{text!r}: {_SYMBOL.get(type(node.op), 'that operator')!r} is not allowed")
        _check(node.operand, expression, text)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise GateError(f"{text!r}: {ast.get_source_segment(expression, node)!r} is not a number")
        if not finite_number(node.value):
            shown = (ast.get_source_segment(expression, node) or "")[:40]
            raise GateError(f"{text!r}: {shown!r} is too large (at most {MAX_NUMBER:g})")
    elif isinstance(node, ast.Name):
        if node.id in TEXT_COLUMNS:
            raise GateError(f"{text!r}: {_text_rule(node.id)}")
        if node.id not in NUMERIC_COLUMNS:
            raise GateError(
                f"{text!r}: {node.id!r} is not a numeric summary column; "
                f"use one of {', '.join(NUMERIC_COLUMNS)}"
            )
    else:
        token = ast.get_source_segment(expression, node) or type(node).__name__
        raise GateError(f"{text!r}: {token!r} is not allowed (columns, numbers, + - * / and one comparison)")


def finite_number(value: int | float) -> bool:
    """A gate's number is a float no larger than MAX_NUMBER: `1e400` is inf and a 400-digit integer
    cannot become a float at all (OverflowError when judged)."""
    try:
        return abs(float(value)) <= MAX_NUMBER
    except OverflowError:
        return False


def check_clients(gates: Sequence[Gate], clients: Sequence[str]) -> str | None:
    """The first gate naming a class the run does not have, as one line."""
    for gate in gates:
        if gate.client != EVERY_CLIENT and gate.client not in clients:
            return f"{gate.text!r}: {gate.client} is not in --clients ({', '.join(clients)})"
    return None


# -- judging ------------------------------------------------------------------------------------------------


class _Missing(Exception):
    def __init__(self, column: str) -> None:
        super().__init__(column)
        self.column = column


def _value(summary: Summary, name: str) -> float:
    value = summary.value(name)
    if value == "never":  # recovery_s when the client never recovered
        return math.inf
    if value is None:
        raise _Missing(name)
    return float(value)


def _evaluate(node: ast.AST, summary: Summary) -> float:
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left, summary), _evaluate(node.right, summary)
        if isinstance(node.op, ast.Div) and right == 0:
            return math.inf if left > 0 else -math.inf if left < 0 else math.nan
        return _ARITHMETIC[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, summary)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Constant):
        return float(node.value)
    assert isinstance(node, ast.Name)
    return _value(summary, node.id)


def _shown(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)


@dataclass(frozen=True)
class Verdict:
    gate: Gate
    client: str
    passed: bool
    detail: str

    @property
    def line(self) -> str:
        state = "passed" if self.passed else "FAILED"
        return f"gate {state}: {self.client}: {self.gate.expression} ({self.detail})"


def judge_text(gate: Gate, summary: Summary, column: str, wanted: str) -> Verdict:
    """`verdict == "stuck"`: the column's whole text, compared as text."""
    value = getattr(summary, column)
    if value is None:  # e.g. verdict outside the metastable scenario; an empty _kinds column is a value
        return Verdict(gate, summary.client, False, f"{column} has no value in this run")
    same = str(value) == wanted
    passed = same if isinstance(gate.tree.ops[0], ast.Eq) else not same
    return Verdict(gate, summary.client, passed, f"{column} = {str(value)!r}")


def judge(gate: Gate, summary: Summary) -> Verdict:
    if operands := text_operands(gate.tree):
        return judge_text(gate, summary, *operands)
    try:
        left = _evaluate(gate.tree.left, summary)
        right = _evaluate(gate.tree.comparators[0], summary)
    except _Missing as missing:
        return Verdict(gate, summary.client, False, f"{missing.column} has no value in this run")
    passed = _COMPARE[type(gate.tree.ops[0])][1](left, right)
    detail = f"{gate.left} = {_shown(left)}"
    if not isinstance(gate.tree.comparators[0], ast.Constant):
        detail += f", {gate.right} = {_shown(right)}"
    return Verdict(gate, summary.client, bool(passed), detail)


def judge_all(gates: Sequence[Gate], summaries: Sequence[Summary], clients: Sequence[str]) -> list[Verdict]:
    """Every gate for every class it names; a named class with no summary (it never finished) fails."""
    by_client = {summary.client: summary for summary in summaries}
    verdicts = []
    for gate in gates:
        names = list(clients) if gate.client == EVERY_CLIENT else [gate.client]
        for name in names:
            summary = by_client.get(name)
            if summary is None:
                verdicts.append(Verdict(gate, name, False, "the class did not finish"))
            else:
                verdicts.append(judge(gate, summary))
    return verdicts


def write_junit(path: Path, verdicts: Sequence[Verdict], suite: str = "hammerlab gates") -> None:
    """One <testcase> per gate and class; a failed one carries <failure message=...>."""
    failures = sum(1 for v in verdicts if not v.passed)
    root = ElementTree.Element("testsuites", tests=str(len(verdicts)), failures=str(failures))
    element = ElementTree.SubElement(
        root, "testsuite", name=suite, tests=str(len(verdicts)), failures=str(failures), errors="0"
    )
    for verdict in verdicts:
        case = ElementTree.SubElement(
            element, "testcase", classname=f"hammerlab.{verdict.client}", name=verdict.gate.expression
        )
        if verdict.passed:
            ElementTree.SubElement(case, "system-out").text = verdict.detail
        else:
            failure = ElementTree.SubElement(case, "failure", message=verdict.line, type="gate")
            failure.text = verdict.detail
    ElementTree.indent(root)
    path.write_text(ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n", "utf-8")
