"""How hub models name their pre-training checkpoints: the built-in naming schemes (families) and the ones a config
describes with a branch pattern or a repository template, and the step and tokens a branch name encodes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ptft.config import ConfigError


@dataclass(frozen=True)
class Family:
    """How a model names its pre-training checkpoints on the hub: branches of one repository matching a pattern, or
    one repository per step (repo_template, e.g. "org/model-step{step}", each checkpoint its repository's main)."""

    name: str
    branch: re.Pattern[str] | None  # named groups: step, and tokens (in tokens_unit) where the name carries them
    tokens_per_step: int | None = None  # only for names that carry no token count
    tokens_unit: int = 10**9  # what one unit of the tokens group counts (OLMo's "tokens4B": billions)
    repo_template: str | None = None


# The built-in naming schemes, each a named pattern (models.<name>.family); anything else is configured with
# models.<name>.branches (a pattern) or models.<name>.repo_template, with no code. Evidence for each scheme:
#   olmo:   allenai/OLMo-1B-hf model card, revisions step{N}-tokens{T}B (tests/hub_facts.yaml [olmo-card])
#   olmo2:  transformers docs model_doc/olmo2.md: from_pretrained("allenai/OLMo-2-0425-1B",
#           revision="stage1-step140000-tokens294B"); later stages (stage2-ingredientN-step...) count steps anew
#   pythia: Pythia model card: step0, step1 ... step143000 (tests/hub_facts.yaml [pythia-card])
# Schemes configured with branches, not built in (tests/test_hub.py serves them):
#   LLM360/Amber: branches ckpt_000 ... ckpt_358 (its README: "change the branch from 'main' to ... 'ckpt_000'";
#           huggingface.co/LLM360/Amber/discussions/3: revision="ckpt_100"); the number counts checkpoints, not
#           optimizer steps, and the tokens per checkpoint are unconfirmed (the card's ~1.26T tokens / 360 is a guess)
#   OLMo-3: stage1-step{N} with no token count (allenai/Olmo-3-1125-32B card: "stage1-stepXXX"); tokens per step
#           unconfirmed
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("olmo", re.compile(r"^step(?P<step>\d+)-tokens(?P<tokens>\d+)B$")),  # allenai/OLMo-1B-hf
        Family("olmo-0724", re.compile(r"^step(?P<step>\d+)-tokens(?P<tokens>\d+)B$")),  # allenai/OLMo-1B-0724-hf
        Family("olmo2", re.compile(r"^stage1-step(?P<step>\d+)-tokens(?P<tokens>\d+)B$")),  # allenai/OLMo-2-*
        # Pythia trains every step on 1024 sequences of 2048 tokens (2,097,152 tokens): that is the family's definition
        # of tokens seen, not a guess at a branch suffix (its branch names carry none).
        Family("pythia", re.compile(r"^step(?P<step>\d+)$"), tokens_per_step=2_097_152),
        # Only the released model, no intermediate checkpoints (meta-llama/Meta-Llama-3-8B): no branch names a step, so
        # main's step and tokens come from models.<name>.main.
        Family("final", re.compile(r"(?!)")),
    ]
}

# What a checkpoint folder needs: weights (safetensors only: pickled *.bin files can run code when loaded), the


def get_family(name: str | None, model: str) -> Family:
    """The built-in naming scheme `name` (models.<model>.family); ConfigError naming the known ones otherwise."""
    if name not in FAMILIES:
        raise ConfigError(f"models.{model}.family is {name!r}; known families: {sorted(FAMILIES)}")
    return FAMILIES[name]



NAMING_KEYS = ("family", "branches", "repo_template")


def model_family(spec: dict[str, Any], model: str) -> Family:
    """How hub model `model` names its checkpoints, from its config: exactly one of family (a built-in scheme),
    branches {pattern, tokens_unit} (a regex with a named group step and optionally tokens; tokens_per_step when
    it has none), or repo_template (one repository per step; needs tokens_per_step). Raises ConfigError naming the
    key that is missing, extra or malformed."""
    given = [k for k in NAMING_KEYS if spec.get(k) is not None]
    if len(given) != 1:
        raise ConfigError(f"models.{model} names its checkpoints with exactly one of {list(NAMING_KEYS)}; got {given}")
    per_step = spec.get("tokens_per_step")
    if given == ["family"]:
        if per_step is not None:
            raise ConfigError(f"models.{model}.tokens_per_step: family {spec['family']!r} defines tokens itself; drop it")
        return get_family(spec["family"], model)
    if given == ["repo_template"]:
        template = spec["repo_template"]
        try:
            probe = template.format(step=0)
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(f"models.{model}.repo_template {template!r}: only {{step}} may be filled in ({err})") from None
        if probe == template.format(step=1) or per_step is None:
            raise ConfigError(f"models.{model}.repo_template {template!r} needs {{step}} in it and "
                              f"models.{model}.tokens_per_step beside it")  # fmt: skip
        return Family("repo_template", None, tokens_per_step=int(per_step), repo_template=template)
    branches = spec["branches"]
    try:
        pattern = re.compile(branches["pattern"])
    except re.error as err:
        raise ConfigError(f"models.{model}.branches.pattern {branches['pattern']!r} is not a regex: {err}") from None
    if "step" not in pattern.groupindex:
        raise ConfigError(f"models.{model}.branches.pattern {pattern.pattern!r} has no named group (?P<step>...)")
    if ("tokens" in pattern.groupindex) == (per_step is not None):
        raise ConfigError(
            f"models.{model}: a branches.pattern with a (?P<tokens>...) group reads tokens from the name, one without "
            f"needs models.{model}.tokens_per_step; give exactly one (pattern {pattern.pattern!r}, "
            f"tokens_per_step {per_step!r})"
        )
    if per_step is not None:
        return Family("branches", pattern, tokens_per_step=int(per_step))
    # the schema's default (1e9) fills tokens_unit in a validated config
    return Family("branches", pattern, tokens_unit=int(float(branches["tokens_unit"])))


def parse_branch(family: Family, name: str) -> tuple[int, int] | None:
    """(step, tokens seen) of a branch name of the family, or None when the name is not a step branch."""
    match = family.branch.match(name) if family.branch is not None else None
    if not match:
        return None
    step = int(match["step"])
    if family.tokens_per_step is not None:
        return step, step * family.tokens_per_step
    return step, int(match["tokens"]) * family.tokens_unit
