"""Choice rules (``augmentation.choose``): what they are and when they apply. Read by the
experiments' checks, the classification pipeline's wiring and its ``choose_augmentation``
node; nothing here imports torch."""

from __future__ import annotations


def choose_rules(choose: dict | list) -> list[dict]:
    """``augmentation.choose`` as a list of rules (one rule, or several applied in order)."""
    return list(choose) if isinstance(choose, list) else [choose]


def closeness_required(rule: dict) -> float | None:
    """A rule's ``require: {parent_nearest_share: x}`` (None: no requirement)."""
    need = (rule.get("require") or {}).get("parent_nearest_share")
    return None if need is None else float(need)


def rule_applies(rule: dict, settings: dict) -> bool:
    """Whether a choice rule applies to augmentation ``settings`` (the experiment's own with
    the earlier rules' choices): each setting of its ``when`` equal (the source's default
    is ``transforms``); a rule without ``when`` always applies."""
    defaults = {"source": "transforms"}
    return all(
        settings.get(key, defaults.get(key)) == value
        for key, value in ((rule or {}).get("when") or {}).items()
    )


def variants(settings: dict, rules: list[dict]) -> dict[str, dict]:
    """Every augmentation setting the rules can choose, by its label as ``choose_augmentation``
    writes it (``traditional``, ``ddim + s025``; ``""`` with no rule): the experiment's own
    ``settings`` with each applying rule's options' ``set`` over them, in order."""
    out = {"": {k: v for k, v in settings.items() if k != "choose"}}
    for rule in rules:
        out = {
            **{k: v for k, v in out.items() if not rule_applies(rule, v)},
            **{
                f"{k} + {label}".strip(" +"): {**v, **((o or {}).get("set") or {})}
                for k, v in out.items()
                if rule_applies(rule, v)
                for label, o in ((rule or {}).get("options") or {}).items()
            },
        }
    return out
