"""ptft.hub against a fake hub on 127.0.0.1 (tests/hubserver.py): the real huggingface_hub and transformers clients
resolve step branches per family, pin commits in the lock file, download safetensors and fail clearly."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import yaml

from hubserver import FakeHub, tiny_model_files, tiny_tokenizer
from ptft import hub
from ptft.checks import validate
from ptft.config import ConfigError
from ptft.hub import checkpoint_labels
from ptft.hub.__main__ import main as hub_main
from ptft.provenance import read_provenance, sha256_file

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
# Branch names as the families' real repositories spell them (the token suffix is not computable from the step).
FAMILY_BRANCHES = {
    "olmo": ["step1000-tokens4B", "step18000-tokens75B", "step343000-tokens1438B", "step425000-tokens1781B"],
    "olmo-0724": ["step0-tokens0B", "step1000-tokens2B", "step2000-tokens4B"],
    "olmo2": ["stage1-step1000-tokens5B", "stage1-step2000-tokens9B", "stage2-ingredient1-step1000-tokens5B"],
    "pythia": ["step0", "step1000", "step143000"],
}
REPOS = {"olmo": "allenai/OLMo-1B-hf", "olmo-0724": "allenai/OLMo-1B-0724-hf", "olmo2": "allenai/OLMo-2-0425-1B",
         "pythia": "EleutherAI/pythia-160m"}  # fmt: skip


# ------------------------------------------------------------------------------------------------- fixtures


# LLM360/Amber's branches (model card: "ckpt_000" ... "ckpt_358"; "revision=\"ckpt_100\""): a configured pattern
LLM360_REPO, LLM360_BRANCHES = "LLM360/Amber", ["ckpt_000", "ckpt_100", "ckpt_358"]
# one repository per step, as TinyLlama published its intermediate checkpoints
PER_STEP_REPO, PER_STEP_REPO_STEPS = "acme/tiny-step{step}", [100, 200]
ARCHITECTURES = {"olmo": "olmo", "olmo-0724": "olmo", "olmo2": "olmo2", "pythia": "gpt_neox"}


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    return tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def model_files(family: str, seed: int, tokenizer_dir: Path, tmp: Path) -> dict[str, bytes]:
    return tiny_model_files(ARCHITECTURES[family], seed, tokenizer_dir, tmp)


@pytest.fixture(scope="session")
def fake_hub(tokenizer_dir, tmp_path_factory):
    """Each family's repository with its step branches (different weights each) and main = the last step branch;
    the OLMo-1B-hf repository's main is a commit of its own."""
    tmp = tmp_path_factory.mktemp("repos")
    server = FakeHub()
    for family, branches in FAMILY_BRANCHES.items():
        for seed, branch in enumerate(branches):
            sha = server.commit(REPOS[family], model_files(family, seed, tokenizer_dir, tmp), branch=branch)
        if family != "olmo":
            server.set_branch(REPOS[family], "main", sha)
    server.commit(REPOS["olmo"], model_files("olmo", 99, tokenizer_dir, tmp), branch="main")
    other = model_files("olmo", 5, tokenizer_dir, tmp)  # naming schemes configured, not built in (same weights)
    for branch in LLM360_BRANCHES:
        sha = server.commit(LLM360_REPO, other, branch=branch)
    server.set_branch(LLM360_REPO, "main", sha)
    for step in PER_STEP_REPO_STEPS:
        server.commit(PER_STEP_REPO.format(step=step), other, branch="main")
    server.commit("acme/gated", model_files("olmo", 1, tokenizer_dir, tmp), branch="step1000-tokens4B")
    server.repos[("model", "acme/gated")].gated = True
    server.repos[("model", "acme/gated")].tokens = {"hf_secret"}
    pickles = {k: v for k, v in model_files("olmo", 2, tokenizer_dir, tmp).items() if not k.endswith(".safetensors")}
    server.commit("acme/pickles", {**pickles, "pytorch_model.bin": b"not a safetensors file"}, branch="step1000-tokens4B")
    with server:
        yield server


@pytest.fixture
def client(fake_hub, tmp_path, monkeypatch):
    """The real hub client pointed at the fake hub, online, with a fresh cache; returns the fake hub."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # `make test` exports HF_HUB_OFFLINE=1
    fake_hub.faults.clear()
    fake_hub.log.clear()
    return fake_hub


def spec(family: str, **extra) -> dict:
    return {"source": "hub", "repo": REPOS[family], "family": family, "checkpoints": [], **extra}


def run(model_spec: dict, label, tmp_path: Path, lock: Path | None = None, out: str = "out", **kw) -> dict:
    return hub.materialize("m", label, model_spec, lock or tmp_path / "lock.yaml", tmp_path / out / str(label),
                           backoff_s=0.01, **kw)  # fmt: skip


# ------------------------------------------------------------------------------------------------ resolution


@pytest.mark.parametrize(
    "family, step, branch, tokens",
    [
        ("olmo", 18000, "step18000-tokens75B", 75 * 10**9),
        ("olmo-0724", 0, "step0-tokens0B", 0),
        ("olmo2", 2000, "stage1-step2000-tokens9B", 9 * 10**9),
        ("pythia", 1000, "step1000", 1000 * 2_097_152),
    ],
)
def test_a_step_resolves_to_the_family_branch_listed_by_the_hub(client, family, step, branch, tokens):
    refs = hub.list_refs(REPOS[family], hub.FAMILIES[family])
    entry = hub.resolve(step, refs, repo=REPOS[family], model="m")
    assert (entry["branch"], entry["step"], entry["tokens"], entry["snapped"]) == (branch, step, tokens, False)
    assert entry["commit"] == client.repos[("model", REPOS[family])].branches[branch]


def test_olmo2_later_stages_are_not_taken_for_stage1_steps(client):
    refs = hub.list_refs(REPOS["olmo2"], hub.FAMILIES["olmo2"])
    assert [r.name for r in hub.step_refs(refs)] == ["stage1-step1000-tokens5B", "stage1-step2000-tokens9B"]
    # A stage-2 branch counts its steps within the stage: no global step, so it cannot be a study's checkpoint.
    with pytest.raises(hub.HubError, match=r"'stage2-ingredient1-step1000-tokens5B' .* matches no step branch"):
        hub.resolve("stage2-ingredient1-step1000-tokens5B", refs, repo=REPOS["olmo2"], model="m")


def test_main_takes_the_step_of_the_branch_with_its_commit(client):
    refs = hub.list_refs(REPOS["pythia"], hub.FAMILIES["pythia"])
    entry = hub.resolve("main", refs, repo=REPOS["pythia"], model="m")
    assert (entry["branch"], entry["step"], entry["tokens"]) == ("main", 143000, 143000 * 2_097_152)


def test_main_without_a_matching_branch_needs_the_config_key(client):
    refs = hub.list_refs(REPOS["olmo"], hub.FAMILIES["olmo"])
    with pytest.raises(hub.HubError, match=r"models\.m\.main: \{step"):
        hub.resolve("main", refs, repo=REPOS["olmo"], model="m")
    entry = hub.resolve("main", refs, repo=REPOS["olmo"], model="m", main={"step": 738020, "tokens": 3094 * 10**9})
    assert (entry["step"], entry["tokens"]) == (738020, 3094 * 10**9)


def test_a_missing_step_fails_listing_the_nearest_branches(client, tmp_path):
    with pytest.raises(hub.HubError) as err:
        run(spec("olmo"), 342000, tmp_path)
    message = str(err.value)
    assert "step 342000 has no branch in allenai/OLMo-1B-hf" in message
    assert "step343000-tokens1438B (step 343000)" in message and "snap: nearest" in message
    assert not (tmp_path / "out/342000").exists()


def test_snap_nearest_uses_the_nearest_step_and_records_both(client, tmp_path):
    record = run(spec("olmo", snap="nearest"), 342000, tmp_path)
    assert (record["requested"], record["step"], record["branch"], record["snapped"]) == (
        342000, 343000, "step343000-tokens1438B", True)  # fmt: skip
    assert record["tokens"] == 1438 * 10**9
    pinned = hub.read_lock(tmp_path / "lock.yaml")["models"]["m"]["checkpoints"]["342000"]
    assert (pinned["requested"], pinned["step"], pinned["snapped"]) == (342000, 343000, True)


def test_an_unknown_revision_name_lists_the_closest_names(client):
    refs = hub.list_refs(REPOS["olmo"], hub.FAMILIES["olmo"])
    with pytest.raises(hub.HubError, match=r"'step1000-tokens5B' does not exist.*step1000-tokens4B"):
        hub.resolve("step1000-tokens5B", refs, repo=REPOS["olmo"], model="m")


def test_selection_rules_pick_step_branches_by_tokens(client):
    refs = hub.list_refs(REPOS["olmo"], hub.FAMILIES["olmo"])
    pick = lambda rule: [r.step for r in hub.select(rule, refs, repo="r", model="m")]  # noqa: E731
    assert pick({"first": True}) == [1000]
    assert pick({"last": True}) == [425000]
    # evenly over tokens 4B..1781B: targets 4, 596, 1189, 1781 -> the nearest distinct branches
    assert pick({"uniform_by_tokens": 4}) == [1000, 18000, 343000, 425000]
    assert pick({"uniform_by_tokens": 2}) == [1000, 425000]


def test_unknown_family_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"models\.big\.family is 'gpt2'; known families: \['final', 'olmo', "):
        hub.get_family("gpt2", "big")
    config = yaml.safe_load(PARAMS.read_text())
    config["models"] = {"big": {"source": "hub", "repo": "a/b", "family": "gpt2", "checkpoints": [1]}}
    with pytest.raises(ConfigError, match=r"models\.big\.family: 'gpt2' is not one of"):
        validate(config)


def test_embedded_only_keys_are_rejected_for_hub_models():
    config = yaml.safe_load(PARAMS.read_text())
    config["models"] = {"big": {"source": "hub", "repo": "a/b", "family": "olmo", "checkpoints": [1, "main"],
                                "pretrain": {"lr": 0.1}}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"models\.big \(source hub\) has \['pretrain'\]"):
        validate(config)
    del config["models"]["big"]["pretrain"]
    assert "architecture" not in validate(config)["models"]["big"]  # schema defaults of embedded keys are dropped


# ------------------------------------------------------------------------------------- configured naming schemes

BUILT_IN_AS_PATTERNS = {
    "olmo": {"branches": {"pattern": r"^step(?P<step>\d+)-tokens(?P<tokens>\d+)B$"}},
    "olmo2": {"branches": {"pattern": r"^stage1-step(?P<step>\d+)-tokens(?P<tokens>\d+)B$"}},
    "pythia": {"branches": {"pattern": r"^step(?P<step>\d+)$"}, "tokens_per_step": 2_097_152},
}


def hub_model(**spec) -> dict:
    """A hub model's spec as the schema fills it (tokens_unit's default), checked as a study config checks it."""
    config = yaml.safe_load(PARAMS.read_text())
    config["models"] = {"m": {"source": "hub", "checkpoints": [1], **spec}}
    return validate(config)["models"]["m"]


@pytest.mark.parametrize("family", sorted(BUILT_IN_AS_PATTERNS))
def test_a_built_in_family_written_as_a_pattern_reads_the_same_branches(client, family):
    configured = hub.model_family(hub_model(repo=REPOS[family], **BUILT_IN_AS_PATTERNS[family]), "m")
    assert hub.list_refs(REPOS[family], configured) == hub.list_refs(REPOS[family], hub.FAMILIES[family])
    assert [r.name for r in hub.step_refs(hub.list_refs(REPOS[family], configured))] == [
        b for b in FAMILY_BRANCHES[family] if not b.startswith("stage2")]  # fmt: skip


def test_llm360_checkpoint_branches_resolve_through_a_configured_pattern(client, tmp_path):
    # 3.5e9 tokens per checkpoint is illustrative (Amber's real count per checkpoint is unconfirmed)
    spec = hub_model(repo=LLM360_REPO, branches={"pattern": r"^ckpt_(?P<step>\d+)$"}, tokens_per_step=3_500_000_000)
    refs = hub.list_refs(LLM360_REPO, hub.model_family(spec, "m"))
    assert [(r.name, r.step, r.tokens) for r in hub.step_refs(refs)] == [
        ("ckpt_000", 0, 0), ("ckpt_100", 100, 350 * 10**9), ("ckpt_358", 358, 358 * 3_500_000_000)]  # fmt: skip
    assert [r.step for r in hub.select({"uniform_by_tokens": 2}, refs, repo=LLM360_REPO, model="m")] == [0, 358]
    record = run(spec, 100, tmp_path)
    assert (record["branch"], record["step"], record["tokens"], record["repo"]) == ("ckpt_100", 100, 350 * 10**9, LLM360_REPO)
    assert record["branches"]["pattern"] == r"^ckpt_(?P<step>\d+)$" and "family" not in record
    assert hub.read_lock(tmp_path / "lock.yaml")["models"]["m"]["branches"] == spec["branches"]


def test_a_tokens_group_counts_in_tokens_unit(client):
    spec = hub_model(repo=REPOS["olmo"], branches={"pattern": r"^step(?P<step>\d+)-tokens(?P<tokens>\d+)B$", "tokens_unit": 1e6})
    assert spec["branches"]["tokens_unit"] == 1e6
    assert hub.parse_branch(hub.model_family(spec, "m"), "step18000-tokens75B") == (18000, 75 * 10**6)
    assert hub.parse_branch(hub.model_family(hub_model(repo="a/b", branches=spec["branches"] | {"tokens_unit": 1e9}), "m"),
                            "step18000-tokens75B") == (18000, 75 * 10**9)  # fmt: skip


def test_one_repository_per_step_resolves_each_step_to_its_repositorys_main(client, tmp_path):
    spec = hub_model(repo_template=PER_STEP_REPO, tokens_per_step=1000, checkpoints=PER_STEP_REPO_STEPS)
    record = run(spec, 200, tmp_path)
    repo = PER_STEP_REPO.format(step=200)
    assert (record["repo"], record["branch"], record["step"], record["tokens"]) == (repo, "main", 200, 200_000)
    assert record["commit"] == client.repos[("model", repo)].branches["main"]
    assert (tmp_path / "out/200/model.safetensors").is_file()
    config = yaml.safe_load(PARAMS.read_text())
    config["models"] = {"m": spec}
    hub.resolve_config(validate(config), tmp_path / "lock.yaml")
    pinned = hub.read_lock(tmp_path / "lock.yaml")["models"]["m"]
    assert pinned["repo"] == PER_STEP_REPO
    assert {k: v["repo"] for k, v in pinned["checkpoints"].items()} == {"100": "acme/tiny-step100", "200": repo}
    with pytest.raises(hub.HubError, match=r"repo_template gives acme/tiny-step300 for step 300: .*not found"):
        run(spec, 300, tmp_path)
    with pytest.raises(hub.HubError, match=r"'main': a model with repo_template takes steps only"):
        run(spec, "main", tmp_path)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"repo": "a/b", "family": "olmo", "branches": {"pattern": "^(?P<step>\\d+)$"}}, r"exactly one of \['family', 'branches'"),
        ({"repo": "a/b"}, r"exactly one of \['family', 'branches', 'repo_template'\]; got \[\]"),
        ({"repo": "a/b", "branches": {"pattern": "^ckpt_\\d+$"}, "tokens_per_step": 5}, r"no named group \(\?P<step>"),
        ({"repo": "a/b", "branches": {"pattern": "^ckpt_(?P<step>\\d+)$"}}, r"needs models\.m\.tokens_per_step"),
        ({"repo": "a/b", "branches": {"pattern": "^ckpt_(?P<step>\\d+"}, "tokens_per_step": 5}, r"branches\.pattern .* is not a regex"),
        ({"repo": "a/b", "family": "pythia", "tokens_per_step": 5}, r"family 'pythia' defines tokens itself"),
        ({"repo_template": "a/b-{step}-{size}", "tokens_per_step": 5}, r"only \{step\} may be filled in"),
        ({"repo_template": "a/b-{stp}", "tokens_per_step": 5}, r"models\.m\.repo_template: 'a/b-\{stp\}' does not match"),
        ({"repo_template": "a/b-{step}"}, r"needs \{step\} in it and models\.m\.tokens_per_step"),
        ({"repo": "a/b", "repo_template": "a/b-{step}", "tokens_per_step": 5}, r"exactly one of repo .* and repo_template"),
    ],
)
def test_a_naming_scheme_that_cannot_work_is_a_config_error_naming_the_key(spec, message):
    with pytest.raises(ConfigError, match=message):
        hub_model(**spec)


# ------------------------------------------------------------------------------------------------ lock file


def test_selection_rules_plan_from_the_lock_and_fail_before_it(client, tmp_path):
    config = yaml.safe_load(PARAMS.read_text())
    config["models"] = {"m": spec("olmo", checkpoints=[{"uniform_by_tokens": 3}, "main"], main={"step": 9, "tokens": 9})}
    config = validate(config)
    with pytest.raises(ConfigError, match=r"uniform_by_tokens=3 is not resolved.*python -m ptft\.hub resolve"):
        checkpoint_labels(config, "m", hub.read_lock(tmp_path / "lock.yaml"))
    hub.resolve_config(config, tmp_path / "lock.yaml")
    assert checkpoint_labels(config, "m", hub.read_lock(tmp_path / "lock.yaml")) == [1000, 343000, 425000, "main"]


def test_the_resolve_command_pins_a_whole_config(client, tmp_path, monkeypatch, capsys):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the command sets them
    config = yaml.safe_load(PARAMS.read_text())
    config.update(offline=False, revisions_lock=str(tmp_path / "study.lock.yaml"))
    config["models"] = {"p": spec("pythia", checkpoints=[{"first": True}, {"last": True}, 1000, "main"])}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    assert hub_main(["resolve", "--configfile", str(tmp_path / "study.yaml")]) == 0
    assert "p: 4 checkpoints pinned" in capsys.readouterr().out
    pinned = hub.read_lock(tmp_path / "study.lock.yaml")["models"]["p"]
    assert sorted(pinned["checkpoints"]) == ["0", "1000", "143000", "main"]
    assert pinned["checkpoints"]["main"]["commit"] == pinned["checkpoints"]["143000"]["commit"]
    assert pinned["rules"] == {"first": [0], "last": [143000]}


def test_a_pinned_study_keeps_its_commit_when_the_branch_moves(client, tokenizer_dir, tmp_path):
    lock = tmp_path / "lock.yaml"
    first = run(spec("pythia"), 1000, tmp_path, lock, out="first")
    weights = first["weights_sha256"]
    # The hub moves the branch to new weights; a fresh resolution would now see the new commit.
    moved = client.commit(REPOS["pythia"], model_files("pythia", 42, tokenizer_dir, tmp_path), branch="step1000")
    try:
        assert hub.resolve(1000, hub.list_refs(REPOS["pythia"], hub.FAMILIES["pythia"]), repo="r", model="m")["commit"] == moved
        again = run(spec("pythia"), 1000, tmp_path, lock, out="again")
    finally:
        client.set_branch(REPOS["pythia"], "step1000", first["commit"])
    assert again["commit"] == first["commit"] != moved
    assert again["weights_sha256"] == weights
    with pytest.raises(hub.HubError, match=r"pinned to repo 'EleutherAI/pythia-160m', but the config names"):
        run(spec("pythia", repo="EleutherAI/pythia-70m"), 1000, tmp_path, lock, out="other")
    assert (tmp_path / "again/1000/model.safetensors").read_bytes() == (tmp_path / "first/1000/model.safetensors").read_bytes()


def test_concurrent_jobs_add_their_pins_without_losing_any(client, tmp_path):
    lock = tmp_path / "lock.yaml"
    labels = [1000, 18000, 343000, 425000, "main"]
    errors = []

    def pin(label):
        try:
            hub.pin(lock, "m", spec("olmo", main={"step": 1, "tokens": 1}), label)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=pin, args=(label,)) for label in labels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(hub.read_lock(lock)["models"]["m"]["checkpoints"]) == sorted(str(x) for x in labels)
    assert lock.read_text().startswith("# ptft revisions lock")


# --------------------------------------------------------------------------------------------- materialize


def test_a_materialized_checkpoint_loads_and_says_where_it_came_from(client, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    record = run(spec("olmo2"), 2000, tmp_path)
    folder = tmp_path / "out/2000"
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 300)
    saved = read_provenance(folder)
    assert saved == json.loads(json.dumps(record))
    repo = client.repos[("model", REPOS["olmo2"])]
    assert {k: saved[k] for k in ("model", "repo", "branch", "commit", "step", "tokens", "source", "family")} == {
        "model": "m", "repo": REPOS["olmo2"], "branch": "stage1-step2000-tokens9B",
        "commit": repo.branches["stage1-step2000-tokens9B"], "step": 2000, "tokens": 9 * 10**9, "source": "hub",
        "family": "olmo2"}  # fmt: skip
    assert not list(folder.glob("*.bin")) and not (folder / ".cache").exists()


def test_a_gated_repo_asks_for_hf_token(client, tmp_path, monkeypatch):
    gated = {"source": "hub", "repo": "acme/gated", "family": "olmo", "checkpoints": []}
    with pytest.raises(hub.HubError, match=r"acme/gated is gated.*Set HF_TOKEN"):
        run(gated, 1000, tmp_path)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert run(gated, 1000, tmp_path)["branch"] == "step1000-tokens4B"


def test_a_missing_repo_says_it_may_be_private(client, tmp_path):
    missing = {"source": "hub", "repo": "acme/nothing", "family": "olmo", "checkpoints": []}
    with pytest.raises(hub.HubError, match=r"repository not found.*private or gated, set HF_TOKEN"):
        run(missing, 1000, tmp_path)


def test_a_revision_without_safetensors_is_refused(client, tmp_path):
    pickles = {"source": "hub", "repo": "acme/pickles", "family": "olmo", "checkpoints": []}
    with pytest.raises(hub.HubError, match=r"no \*\.safetensors weights.*never unpickles"):
        run(pickles, 1000, tmp_path)
    assert not (tmp_path / "out/1000").exists()


def test_a_download_cut_midway_is_retried_until_it_completes(client, tmp_path):
    client.add_fault("*.safetensors", times=2)  # the hub client's own resume retries these
    record = run(spec("olmo-0724"), 1000, tmp_path)
    assert len(client.served("GET", -1, "model.safetensors")) == 2
    assert record["weights_sha256"]["model.safetensors"] == sha256_file(tmp_path / "out/1000/model.safetensors")


def test_a_download_cut_by_an_outage_is_retried_by_ptft(client, tmp_path):
    # Cut midway, then 503s, which the hub client does not retry: only ptft's retry of the whole download gets through.
    client.add_fault("*.safetensors", times=3, kind="outage")
    record = run(spec("olmo-0724"), 0, tmp_path, attempts=3)
    assert len(client.served("GET", -1, "model.safetensors")) == 1
    assert len(client.served("GET", 503, "model.safetensors")) == 2
    assert record["weights_sha256"]["model.safetensors"] == sha256_file(tmp_path / "out/0/model.safetensors")


def test_a_download_that_keeps_failing_leaves_no_checkpoint(client, tmp_path):
    client.add_fault("*.safetensors", times=float("inf"), kind="outage")
    with pytest.raises(hub.HubError, match=r"download failed after 2 attempts"):
        run(spec("olmo-0724"), 2000, tmp_path, attempts=2)
    out = tmp_path / "out"
    assert not (out / "2000").exists()
    assert all(p.name.startswith(".") for p in out.iterdir()) if out.exists() else True
    client.faults.clear()
    assert run(spec("olmo-0724"), 2000, tmp_path)["step"] == 2000  # the rerun resumes and completes


def test_offline_studies_say_what_is_missing(client, tmp_path, monkeypatch):
    import huggingface_hub.constants

    lock = tmp_path / "lock.yaml"
    hub.pin(lock, "m", spec("pythia"), 1000)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(hub.HubError, match=r"not pinned in .*offline is true"):
        run(spec("pythia"), 0, tmp_path, lock)
    with pytest.raises(hub.HubError, match=r"not in the HF cache .*offline is true"):
        run(spec("pythia"), 1000, tmp_path, lock)


def test_a_local_folder_is_copied_with_its_step_and_tokens(tokenizer_dir, tmp_path):
    source = tmp_path / "run/step500"
    source.mkdir(parents=True)
    for name, data in model_files("olmo", 3, tokenizer_dir, tmp_path).items():
        (source / name).write_bytes(data)
    local = {"source": "local", "path": str(tmp_path / "run/step{checkpoint}"), "tokens_per_step": 4096, "checkpoints": [500]}
    record = run(local, "500", tmp_path)
    assert (record["step"], record["tokens"], record["source"]) == (500, 500 * 4096, "local")
    copied = tmp_path / "out/500/model.safetensors"
    assert copied.read_bytes() == (source / "model.safetensors").read_bytes()
    assert copied.stat().st_ino != (source / "model.safetensors").stat().st_ino
    (source / "model.safetensors").unlink()
    with pytest.raises(hub.HubError, match="no \\*\\.safetensors weights"):
        run(local, 500, tmp_path, out="again")
