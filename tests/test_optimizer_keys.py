"""PaddleSeg's optimizer keys ``custom_cfg`` and ``grad_clip_cfg``: the same parameter groups, lr
multipliers, weight decays and updated weights as PaddleSeg 2.8's own optimizer building (the
oracle, where it imports), a numpy clip, and one-line errors naming file and key."""
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import paddle
import pytest
import yaml

from gcseg.config import Config
from gcseg.errors import ConfigError

CUSTOM_CFG = [{"name": "backbone", "lr_mult": 0.1},
              {"name": "_batch_norm", "weight_decay_mult": 0.0},
              {"name": "gc_block", "lr_mult": 2.0, "weight_decay_mult": 0.5},
              {"name": "no_such_layer", "lr_mult": 3.0}]


def write_config(tmp_path: Path, optimizer: Dict[str, Any]) -> Path:
    """A GCNet-R18 config (8 classes) with ``optimizer``; the lr starts at 0.01."""
    path = tmp_path / "c.yml"
    path.write_text(textwrap.dedent(f"""\
        iters: 10
        model:
          type: GCNet
          num_classes: 8
          backbone: {{type: ResNet18_vd, output_stride: 8}}
          gc_channels: 16
        lr_scheduler: {{type: PolynomialDecay, learning_rate: 0.01, end_lr: 0.0, power: 0.9}}
        optimizer: {yaml.safe_dump(optimizer, default_flow_style=True).strip()}
        """))
    return path


def paddleseg_optimizer(optimizer: Dict[str, Any], model: paddle.nn.Layer):
    """PaddleSeg 2.8 building the same optimizer section for ``model`` (its builder turns
    ``type: SGD`` with ``momentum`` into Momentum)."""
    pytest.importorskip("paddleseg.optimizers")  # registers PaddleSeg's optimizers
    from paddleseg.cvlibs import manager
    spec = dict(optimizer)
    kind = spec.pop("type")
    kind = "Momentum" if kind == "SGD" and "momentum" in spec else kind
    scheduler = paddle.optimizer.lr.PolynomialDecay(0.01, decay_steps=10, end_lr=0.0, power=0.9)
    return manager.OPTIMIZERS[kind](**spec)(model, scheduler)


def groups_by_key(optimizer, model: paddle.nn.Layer) -> List[Dict[str, Any]]:
    """Each parameter group as ``{"params": [state_dict keys], lr and decay settings}``."""
    keys = {param.name: key for key, param in model.named_parameters()}
    groups = []
    for group in optimizer._param_groups:
        settings = {name: value for name, value in group.items()
                    if name in ("learning_rate", "weight_decay")}
        decay = settings.get("weight_decay")
        if isinstance(decay, paddle.regularizer.WeightDecayRegularizer):
            settings["weight_decay"] = decay._coeff
        groups.append({"params": [keys[p.name] for p in group["params"]], **settings})
    return groups


def gradients_of(model: paddle.nn.Layer) -> None:
    """Fill ``model``'s gradients from one fixed batch (eval mode: no dropout, no BN update)."""
    model.eval()
    images = paddle.to_tensor(np.random.default_rng(0).normal(size=(2, 3, 64, 64)), "float32")
    sum(logits.square().mean() for logits in model(images)).backward()


def two_optimizers(tmp_path: Path, optimizer: Dict[str, Any], frozen: Optional[str] = None):
    """gcseg's and PaddleSeg's optimizer for the same config, each on its own copy of one model
    (``frozen``: a parameter made untrainable first)."""
    cfg = Config(write_config(tmp_path, optimizer))
    oracle_model = Config(write_config(tmp_path, optimizer)).model
    oracle_model.set_state_dict(cfg.model.state_dict())
    if frozen:
        for model in (cfg.model, oracle_model):
            dict(model.named_parameters())[frozen].stop_gradient = True
    return cfg.model, cfg.optimizer, oracle_model, paddleseg_optimizer(optimizer, oracle_model)


@pytest.mark.parametrize("optimizer", [
    {"type": "SGD", "momentum": 0.9, "weight_decay": 4.0e-5, "custom_cfg": CUSTOM_CFG},
    {"type": "SGD", "weight_decay": 1.0e-3, "custom_cfg": CUSTOM_CFG,
     "grad_clip_cfg": {"name": "ClipGradByNorm", "clip_norm": 0.01}},
    {"type": "SGD", "momentum": 0.9, "custom_cfg": CUSTOM_CFG[:1],
     "grad_clip_cfg": {"name": "ClipGradByGlobalNorm", "clip_norm": 0.05}},
    {"type": "AdamW", "weight_decay": 0.01, "custom_cfg": CUSTOM_CFG,
     "grad_clip_cfg": {"name": "ClipGradByValue", "max": 1.0e-3}},
], ids=["momentum", "sgd-clip-norm", "global-norm", "adamw-clip-value"])
def test_same_groups_and_same_step_as_paddleseg(tmp_path, optimizer):
    model, ours, oracle_model, theirs = two_optimizers(
        tmp_path, optimizer, frozen="backbone.conv1_1._conv.weight")
    assert groups_by_key(ours, model) == groups_by_key(theirs, oracle_model)
    assert "backbone.conv1_1._conv.weight" not in groups_by_key(ours, model)[0]["params"]
    assert type(ours) is type(theirs) and type(ours._grad_clip) is type(theirs._grad_clip)
    before = {key: value.numpy() for key, value in model.state_dict().items()}
    for net, optim in ((model, ours), (oracle_model, theirs)):
        gradients_of(net)
        optim.step()
    after, expected = model.state_dict(), oracle_model.state_dict()
    moved = [key for key in after if not np.array_equal(after[key].numpy(), before[key])]
    assert len(moved) > 50
    for key in after:
        np.testing.assert_allclose(after[key].numpy(), expected[key].numpy(), rtol=1e-6,
                                   atol=1e-9, err_msg=key)


def test_lr_mult_and_clip_by_norm_against_numpy(tmp_path):
    """Plain SGD: w - lr * lr_mult * g * min(1, clip_norm / ||g||), per parameter."""
    optimizer = {"type": "SGD", "custom_cfg": [{"name": "head.conv.", "lr_mult": 10.0}],
                 "grad_clip_cfg": {"name": "ClipGradByNorm", "clip_norm": 0.02}}
    cfg = Config(write_config(tmp_path, optimizer))
    model, sgd = cfg.model, cfg.optimizer
    before = {key: param.numpy() for key, param in model.named_parameters()}
    gradients_of(model)
    grads = {key: param.grad.numpy() for key, param in model.named_parameters()
             if param.grad is not None}  # not the auxiliary head's: eval mode
    sgd.step()
    for key, param in model.named_parameters():
        if key not in grads:
            np.testing.assert_array_equal(param.numpy(), before[key])
            continue
        grad = grads[key] * min(1.0, 0.02 / max(np.linalg.norm(grads[key]), 1e-30))
        lr = 0.01 * (10.0 if key.startswith("head.conv.") else 1.0)
        np.testing.assert_allclose(param.numpy(), before[key] - lr * grad, rtol=1e-5,
                                   atol=1e-8, err_msg=key)


def test_without_custom_cfg_every_parameter_in_one_group(tmp_path):
    cfg = Config(write_config(tmp_path, {"type": "SGD", "momentum": 0.9}))
    assert cfg.optimizer._parameter_list == cfg.model.parameters()
    assert {param.optimize_attr["learning_rate"] for param in cfg.model.parameters()} == {1.0}


@pytest.mark.parametrize("optimizer, expected", [
    ({"type": "SGD", "custom_cfg": [{"lr_mult": 0.1}]},
     "optimizer.custom_cfg: item 0: expected a mapping with name:"),
    ({"type": "SGD", "custom_cfg": [{"name": "backbone", "lr_mul": 0.1}]},
     "optimizer.custom_cfg: item 0: unknown key(s) lr_mul"),
    ({"type": "SGD", "custom_cfg": [{"name": "backbone", "lr_mult": "x"}]},
     "optimizer.custom_cfg: item 0: lr_mult: expected a number, got 'x'"),
    ({"type": "SGD", "custom_cfg": {"name": "backbone"}},
     "optimizer.custom_cfg: expected a list of {name, lr_mult, weight_decay_mult} mappings"),
    ({"type": "SGD", "grad_clip_cfg": {"name": "ClipByNorm", "clip_norm": 1.0}},
     "optimizer.grad_clip_cfg: name: expected one of ClipGradByValue, ClipGradByNorm, "
     "ClipGradByGlobalNorm, got 'ClipByNorm'"),
    ({"type": "SGD", "grad_clip_cfg": {"name": "ClipGradByNorm", "norm": 1.0}},
     "optimizer.grad_clip_cfg: cannot build ClipGradByNorm: "),
])
def test_bad_keys_are_one_line_errors_naming_file_and_key(tmp_path, optimizer, expected):
    path = write_config(tmp_path, optimizer)
    with pytest.raises(ConfigError) as info:
        Config(path).optimizer
    message = str(info.value)
    assert message.startswith(f"{path.resolve()}: {expected}") and "\n" not in message
