"""Label and label-selector syntax, checked before anything is sent to the coordinator."""
from __future__ import annotations

from coordinator.cli.errors import CliError
from edgefleet.labels import LabelError, check_label


def parse_label(text: str, *, what: str = "label") -> tuple[str, str]:
    """`key=value` → (key, value). The value may contain '=' but not be empty."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep:
        raise CliError(f"{what} {text!r} is not key=value")
    if not value.strip():
        raise CliError(f"{what} {text!r}: the value is empty")
    try:
        check_label(key, value.strip())  # the coordinator's grammar, so nothing passes here to fail there
    except LabelError as exc:
        raise CliError(f"{what} {text!r}: {exc}") from None
    return key, value.strip()


def parse_labels(items: list[str], *, what: str = "label") -> dict[str, str]:
    """Several `key=value` arguments → a dict; the same key twice with different values is an error."""
    labels: dict[str, str] = {}
    for item in items:
        key, value = parse_label(item, what=what)
        if key in labels and labels[key] != value:
            raise CliError(f"{what} {key!r} given twice: {labels[key]!r} and {value!r}")
        labels[key] = value
    return labels


def parse_selector(text: str) -> str:
    """Check `k=v,k2=v2` (every pair must match) and return it in canonical form, pairs in the given order.

    For well-formed input without stray spaces the canonical form is the text as given.
    """
    if not text.strip():
        raise CliError("--select is empty: write k=v or k=v,k2=v2")
    pairs: list[str] = []
    seen: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            raise CliError(f"--select {text!r}: empty term between commas")
        key, value = parse_label(part, what=f"--select {text!r}: term")
        if key in seen and seen[key] != value:
            raise CliError(f"--select {text!r}: key {key!r} asked twice with different values")
        seen[key] = value
        pairs.append(f"{key}={value}")
    return ",".join(pairs)


def parse_label_changes(args: list[str], remove: list[str]) -> tuple[dict[str, str], list[str]]:
    """`edgectl device label` arguments: `k=v` sets, `k-` (kubectl style) or `--remove k` removes."""
    to_set: list[str] = []
    to_remove: list[str] = []
    for arg in args:
        if "=" not in arg and arg.endswith("-"):
            to_remove.append(arg[:-1])
        else:
            to_set.append(arg)
    to_remove.extend(remove)
    for key in to_remove:
        try:
            check_label(key, "x")  # only the key matters here
        except LabelError as exc:
            raise CliError(f"label key to remove {key!r}: {exc}") from None
    labels = parse_labels(to_set)
    both = sorted(set(labels) & set(to_remove))
    if both:
        raise CliError(f"label {both[0]!r} is both set and removed")
    if not labels and not to_remove:
        raise CliError("nothing to change: give key=value to set a label, or key- / --remove key to remove one")
    return labels, list(dict.fromkeys(to_remove))
