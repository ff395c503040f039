"""The draft ``evaluate`` and ``schedule`` use when ``--draft`` is not given."""

import json

import pytest

from specsim import models
from specsim.cli import main
from specsim.cli._args import default_draft


def _slow_default(target_name):
    """Independent reference: every dense catalogue model, filtered and ranked by hand."""
    target = models.get(target_name)
    if int(target.vocab) == 32000:
        return "llama-68m"
    family = models.canonical_name(target_name).lower().split("-")[0]
    rows = [
        (name.lower().split("-")[0] != family, float(models.get(name).parameter_count), name)
        for name in models.names()
        if int(models.get(name).vocab) == int(target.vocab)
        and float(models.get(name).n_experts) <= 1
        and float(models.get(name).parameter_count) < float(target.parameter_count)
    ]
    return sorted(rows)[0][2] if rows else None


@pytest.mark.parametrize(
    "name", ["llama-2-7b", "llama-3-8b", "qwen3-8b", "qwen3-32b", "gemma-3-27b"]
)
def test_default_draft_shares_the_vocabulary_and_is_the_smallest_of_the_family(name):
    chosen = default_draft(models.get(name), name)
    assert chosen == _slow_default(name)
    draft, target = models.get(chosen), models.get(name)
    assert int(draft.vocab) == int(target.vocab) or chosen == "llama-68m"
    assert float(draft.parameter_count) < float(target.parameter_count)


@pytest.mark.slow  # three evaluate commands: 2.7 s (2-core EPYC)
def test_evaluate_without_draft_verifies_the_target_s_own_vocabulary(capsys):
    assert main(["evaluate", "--target", "llama-3-8b", "--json"]) == 0
    implicit = json.loads(capsys.readouterr().out)
    argv = ["evaluate", "--target", "llama-3-8b", "--draft", "Llama-3.2-1B", "--json"]
    assert main(argv) == 0
    assert implicit == json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--target", "llama-3-8b"]) == 0
    assert "+ draft Llama-3.2-1B" in capsys.readouterr().out


def test_a_target_without_a_smaller_same_vocabulary_model_is_a_usage_error(capsys):
    code = main(["evaluate", "--target", "gpt-oss-20b"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "201088-token vocabulary" in err and "--draft NAME" in err
