"""transformers models from their config classes (``hf:`` specs): offline, on meta, with the
published parameter counts; and the message when transformers is missing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

import fxcost
from fxcost.cli import main
from fxcost.errors import SpecError


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


transformers = pytest.importorskip("transformers")


def test_hf_spec_builds_from_config_on_meta() -> None:
    from fxcost.loading.hf import load_hf

    model, name = load_hf("hf:GPT2LMHeadModel")
    assert name == "GPT2LMHeadModel"
    assert all(p.device.type == "meta" for p in model.parameters())
    # GPT-2 small: 124,439,808 with the tied lm_head once (163,037,184 would count it twice:
    # + 50,257 x 768 = 38,597,376)
    report = fxcost.analyze(model, example_inputs=(torch.zeros(1, 8, dtype=torch.int64),))
    assert report.total().params == 124_439_808 == sum(p.numel() for p in model.parameters())
    assert report.trace.method == "eager"  # the fake run: torch.fx cannot take forward(**kwargs)


def test_hf_config_overrides_and_local_config(tmp_path: Any) -> None:
    from fxcost.loading.hf import load_hf

    model, _ = load_hf("hf:BertModel", {"num_hidden_layers": 2})
    assert len(model.encoder.layer) == 2
    transformers.BertConfig(num_hidden_layers=1, architectures=["BertForMaskedLM"]).to_json_file(tmp_path / "config.json")
    model, name = load_hf(f"hf:{tmp_path / 'config.json'}")
    assert name == "BertForMaskedLM" and len(model.bert.encoder.layer) == 1
    with pytest.raises(SpecError, match="no field 'n_lay'"):
        load_hf("hf:GPT2LMHeadModel", {"n_lay": 2})
    with pytest.raises(SpecError, match="GPT2LMHeadModel"):
        load_hf("hf:GPT2LMHeadMode")


def test_cli_hf(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "analyze", "hf:BertModel", "--config", "num_hidden_layers=1", "--input", "2x16:int64",
                         "--input", "attention_mask=2x16:int64", "-f", "json")
    assert code == 0, err
    d = json.loads(out)
    assert [i["name"] for i in d["inputs"]] == ["input_ids", "attention_mask"]
    assert d["outputs"][0]["shape"] == [2, 16, 768]
    code, _, err = run(capsys, "analyze", "hf:BertModel", "--arg", "x=1", "--input", "2x16:int64")
    assert code == 2 and "--config" in err


def test_hf_configs_without_use_cache() -> None:
    # ViTConfig has no use_cache field: fxcost only turns the cache off where there is one
    from fxcost.loading.hf import load_hf

    model, _ = load_hf("hf:ViTModel", {"num_hidden_layers": 1})
    report = fxcost.analyze(model, input_size=(1, 3, 224, 224))
    assert report.total().params == sum(p.numel() for p in model.parameters())
    assert report.outputs[0].shape == (1, 197, 768)  # 14 x 14 patches + the class token


def test_hf_bad_specs(tmp_path: Any) -> None:
    from fxcost.loading.hf import load_hf

    with pytest.raises(SpecError, match="no config of its own"):
        load_hf("hf:AutoModel")
    transformers.BertConfig(architectures=["NoSuchArch"]).to_json_file(tmp_path / "config.json")
    with pytest.raises(SpecError, match="NoSuchArch"):
        load_hf(f"hf:{tmp_path / 'config.json'}")
    with pytest.raises(SpecError, match="does not exist"):
        load_hf(f"hf:{tmp_path / 'missing.json'}")
