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


def setting(settings: dict, key: str):
    """One augmentation setting as a rule's ``when`` reads it: the source's default is
    ``transforms``; another setting not given is None."""
    return settings.get(key, "transforms" if key == "source" else None)


def rule_applies(rule: dict, settings: dict) -> bool:
    """Whether a choice rule applies to augmentation ``settings`` (the experiment's own with
    the earlier rules' choices): each setting of its ``when`` equal (``setting``); a rule
    without ``when`` always applies."""
    return all(
        setting(settings, key) == value for key, value in ((rule or {}).get("when") or {}).items()
    )


def next_variants(variants: dict[str, dict], rule: dict) -> dict[str, dict]:
    """``variants`` (label: settings) after one more rule: where it applies, each of its
    options' ``set`` over the settings, labelled ``<label> + <option>`` (the option alone
    after the first); where it does not, the settings as they were. An option label that is
    not a string, or two routes to one label, is an error: a label names one setting."""
    out: dict[str, dict] = {}
    for label, settings in variants.items():
        if not rule_applies(rule, settings):
            routes = [(label, settings)]
        else:
            routes = []
            for option, o in ((rule or {}).get("options") or {}).items():
                if not isinstance(option, str):
                    raise ValueError(
                        f"augmentation.choose: option label {option!r} is not a string "
                        "(quote it in the YAML)"
                    )
                joined = f"{label} + {option}" if label else option
                routes.append((joined, {**settings, **((o or {}).get("set") or {})}))
        for joined, value in routes:
            if joined in out:
                raise ValueError(
                    f"augmentation.choose: two choices are labelled {joined!r}; rename an "
                    "option so that each label names one setting"
                )
            out[joined] = value
    return out


def variants(settings: dict, rules: list[dict]) -> dict[str, dict]:
    """Every augmentation setting the rules can choose, by its label as ``choose_augmentation``
    writes it (``traditional``, ``ddim + s025``; ``""`` with no rule): the experiment's own
    ``settings`` with each applying rule's options' ``set`` over them, in order."""
    out = {"": {k: v for k, v in settings.items() if k != "choose"}}
    for rule in rules:
        out = next_variants(out, rule)
    return out
