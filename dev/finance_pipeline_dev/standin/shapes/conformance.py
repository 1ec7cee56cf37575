"""Conformance checker: compares a Stripe object dict with the installed SDK's resource classes.

The SDK declares every field of every resource as a class annotation; the checker reads them
from its source (no import of the resource classes needed) and walks the object recursively.
"""

from __future__ import annotations

import ast
import decimal
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Stripe ``object`` value -> (SDK module, class) declaring its fields.
SDK_CLASSES: dict[str, tuple[str, str]] = {
    "account": ("_account", "Account"),
    "balance_transaction": ("_balance_transaction", "BalanceTransaction"),
    "charge": ("_charge", "Charge"),
    "coupon": ("_coupon", "Coupon"),
    "credit_note": ("_credit_note", "CreditNote"),
    "credit_note_line_item": ("_credit_note_line_item", "CreditNoteLineItem"),
    "customer": ("_customer", "Customer"),
    "discount": ("_discount", "Discount"),
    "event": ("_event", "Event"),
    "invoice": ("_invoice", "Invoice"),
    "invoice_payment": ("_invoice_payment", "InvoicePayment"),
    "line_item": ("_invoice_line_item", "InvoiceLineItem"),
    "plan": ("_plan", "Plan"),
    "price": ("_price", "Price"),
    "product": ("_product", "Product"),
    "refund": ("_refund", "Refund"),
    "subscription": ("_subscription", "Subscription"),
    "subscription_item": ("_subscription_item", "SubscriptionItem"),
}

_LIST_KEYS = {"object", "data", "has_more", "url", "total_count"}
_SCALARS = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}


@functools.cache
def _sdk_module(module: str) -> tuple[ast.Module, dict[str, tuple[str, str]]]:
    import stripe  # local: the checker is only used by tests and tooling

    path = Path(stripe.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stripe._"):
            mod = node.module.split(".", 1)[1]  # type: ignore[union-attr]
            for alias in node.names:
                imports[alias.asname or alias.name] = (mod, alias.name)
    return tree, imports


@functools.cache
def _sdk_class(module: str, path: tuple[str, ...]) -> ast.ClassDef:
    node: Any = _sdk_module(module)[0]
    for name in path:
        node = next(n for n in node.body if isinstance(n, ast.ClassDef) and n.name == name)
    return node


def sdk_fields(module: str, path: tuple[str, ...]) -> dict[str, ast.expr]:
    """The annotated (non-ClassVar) fields of an SDK resource class, read from its source."""
    fields: dict[str, ast.expr] = {}
    for n in _sdk_class(module, path).body:
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            ann = n.annotation
            if isinstance(ann, ast.Subscript) and _name(ann.value) == "ClassVar":
                continue
            fields[n.target.id] = ann
    return fields


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _is_optional(ann: ast.expr) -> bool:
    return isinstance(ann, ast.Subscript) and _name(ann.value) == "Optional"


def _args(sub: ast.Subscript) -> list[ast.expr]:
    return list(sub.slice.elts) if isinstance(sub.slice, ast.Tuple) else [sub.slice]


def _resolve_class(
    name: str, module: str, path: tuple[str, ...]
) -> tuple[str, tuple[str, ...]] | None:
    for depth in range(len(path), 0, -1):
        scope = _sdk_class(module, path[:depth])
        if any(isinstance(n, ast.ClassDef) and n.name == name for n in scope.body):
            return module, (*path[:depth], name)
    imported = _sdk_module(module)[1].get(name)
    if imported is not None:
        try:
            _sdk_class(imported[0], (imported[1],))
        except (OSError, StopIteration):
            return None
        return imported[0], (imported[1],)
    return None


def _check_value(
    value: Any,
    ann: ast.expr,
    module: str,
    path: tuple[str, ...],
    where: str,
    errors: list[str],
) -> None:
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        ann = ast.parse(ann.value, mode="eval").body
    if isinstance(ann, ast.Subscript):
        head = _name(ann.value)
        args = _args(ann)
        if head == "Optional":
            if value is not None:
                _check_value(value, args[0], module, path, where, errors)
            return
        if value is None:
            errors.append(f"{where}: null but the SDK declares it non-optional")
            return
        if head == "Literal":
            allowed = [a.value for a in args if isinstance(a, ast.Constant)]
            if value not in allowed:
                errors.append(f"{where}: {value!r} not in {allowed}")
            return
        if head == "Union":
            trials: list[list[str]] = []
            for alt in args:
                sub: list[str] = []
                _check_value(value, alt, module, path, where, sub)
                if not sub:
                    return
                trials.append(sub)
            errors.append(f"{where}: matches no alternative ({trials[0][0]})")
            return
        if head == "ExpandableField":
            if not isinstance(value, str):
                _check_value(value, args[0], module, path, where, errors)
            return
        if head == "ListObject":
            if not isinstance(value, dict) or value.get("object") != "list":
                errors.append(f"{where}: expected a list object")
                return
            extra = set(value) - _LIST_KEYS
            if extra:
                errors.append(f"{where}: unexpected list keys {sorted(extra)}")
            for key in ("data", "has_more", "url"):
                if key not in value:
                    errors.append(f"{where}: list without {key!r}")
            for i, item in enumerate(value.get("data") or []):
                _check_value(item, args[0], module, path, f"{where}.data[{i}]", errors)
            return
        if head == "List":
            if not isinstance(value, list):
                errors.append(f"{where}: expected a JSON array")
                return
            for i, item in enumerate(value):
                _check_value(item, args[0], module, path, f"{where}[{i}]", errors)
            return
        if head in ("UntypedStripeObject", "Dict"):
            if not isinstance(value, dict):
                errors.append(f"{where}: expected a JSON object")
            return
        return
    if value is None:
        errors.append(f"{where}: null but the SDK declares it non-optional")
        return
    name = _name(ann)
    if name in _SCALARS:
        ok = isinstance(value, _SCALARS[name]) and (name == "bool" or not isinstance(value, bool))
        if not ok:
            errors.append(f"{where}: {value!r} is not {name}")
        return
    if name == "Decimal":
        # on the wire a decimal string; after SDK hydration (``to_dict()``) a Decimal
        if not isinstance(value, (str, int, decimal.Decimal)) or isinstance(value, bool):
            errors.append(f"{where}: {value!r} is not a decimal string")
        return
    if name in ("Any", "object"):
        return
    target = _resolve_class(name, module, path)
    if target is None:
        return  # a class the checker cannot locate: do not guess
    if not isinstance(value, dict):
        errors.append(f"{where}: expected an object ({name})")
        return
    _check_object(value, target[0], target[1], where, errors)


def _check_object(
    obj: Mapping[str, Any], module: str, path: tuple[str, ...], where: str, errors: list[str]
) -> None:
    fields = sdk_fields(module, path)
    cls = ".".join(path)
    for key in obj:
        if key not in fields:
            errors.append(f"{where}.{key}: not declared on stripe.{cls}")
    for key, ann in fields.items():
        if key not in obj:
            if not _is_optional(ann):
                errors.append(f"{where}.{key}: missing (non-optional on stripe.{cls})")
            continue
        _check_value(obj[key], ann, module, path, f"{where}.{key}", errors)


def conformance_errors(obj: Mapping[str, Any], where: str | None = None) -> list[str]:
    """Differences between a Stripe object dict and the SDK's declared fields, recursively.

    Every emitted key must be declared on the SDK class (or its nested classes) and every
    non-Optional field must be present and non-null. Returns [] for a conformant object.
    """
    kind = obj.get("object")
    if kind not in SDK_CLASSES:
        return [f"{where or '?'}: unknown object type {kind!r}"]
    module, cls = SDK_CLASSES[kind]
    errors: list[str] = []
    _check_object(obj, module, (cls,), where or f"{kind}[{obj.get('id')}]", errors)
    if kind == "event":
        inner = obj.get("data", {}).get("object")
        if isinstance(inner, dict) and inner.get("object") in SDK_CLASSES:
            errors.extend(conformance_errors(inner, f"{where or obj.get('id')}.data.object"))
    return errors
