"""bf16 is never fp32 under another name: a CPU without bf16 instructions, or a Paddle whose CPU
autocast casts nothing, is told apart from a CPU that computes in bf16, from /proc/cpuinfo's
flags (here written as fake cpuinfo files for both kinds of CPU; running Paddle Inference in bf16
needs the real instructions)."""
import numpy as np
import paddle
import pytest

from gcseg import cpu_env
from benchmarks.compare import BF16_ROW, deploy_rows
from gcseg.deploy.fold_bn import fold_batchnorm
from gcseg.engine.amp import (Precision, autocast_computes_in, bf16_unsupported_reason,
                              check_precision)
from gcseg.errors import UsageError
from gcseg.models import GCNet, ResNet18_vd

CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
model name\t: a test CPU
flags\t\t: fpu sse sse2 avx avx2 fma {flags}

processor\t: 1
vendor_id\t: {vendor}
flags\t\t: fpu sse sse2 avx avx2 fma {flags}
"""


@pytest.fixture
def cpuinfo(tmp_path):
    def write(flags: str, vendor: str = "AuthenticAMD") -> str:
        path = tmp_path / f"cpuinfo_{len(flags)}"
        path.write_text(CPUINFO.format(vendor=vendor, flags=flags))
        return str(path)
    return write


@pytest.mark.parametrize("flags, expected", [
    ("avx512f avx512bw", False),            # AVX-512 without its bf16 extension
    ("", False),                           # no AVX-512 at all (e.g. the AMD EPYC of 2026-11-26)
    ("avx512f avx512_bf16", True),
    ("amx_tile amx_bf16", True),
    ("avx512_bf16x", False),               # flags are whole words
])
def test_bf16_support_is_read_from_the_cpuinfo_flags(cpuinfo, flags, expected):
    assert cpu_env.cpu_supports_bf16(cpuinfo(flags)) is expected


def test_a_missing_cpuinfo_means_no_bf16(tmp_path):
    assert not cpu_env.cpu_supports_bf16(str(tmp_path / "absent"))


def test_a_cpu_without_bf16_instructions_is_named_in_one_line(cpuinfo):
    paddle.set_device("cpu")
    path = cpuinfo("avx512f")
    reason = bf16_unsupported_reason("O1", cpuinfo=path)
    assert "this CPU has no bf16 instructions" in reason and path in reason
    assert "\n" not in reason


def test_a_bf16_cpu_is_refused_only_when_paddles_autocast_casts_nothing(cpuinfo):
    """Whether Paddle's CPU autocast computes in bf16 is probed, not assumed: Paddle 2.6.2 and
    3.3.1 keep a conv in float32 there, so bf16 is refused with Paddle named as the reason."""
    paddle.set_device("cpu")
    conv = paddle.nn.Conv2D(3, 3, 1)
    with paddle.amp.auto_cast(level="O1", dtype="bfloat16"):
        really_bf16 = conv(paddle.ones([1, 3, 2, 2])).dtype == paddle.bfloat16
    assert autocast_computes_in("bfloat16", "O1") is really_bf16
    reason = bf16_unsupported_reason("O1", cpuinfo=cpuinfo("avx512f avx512_bf16 amx_bf16"))
    if really_bf16:
        assert reason is None
    else:
        assert f"Paddle {paddle.__version__}'s autocast computes nothing in bf16" in reason


def test_training_and_inference_refuse_bf16_with_one_line_where_it_would_run_fp32():
    paddle.set_device("cpu")
    if bf16_unsupported_reason("O1") is None:
        pytest.skip("this CPU and Paddle compute in bf16")
    for level in ("O1", "O2"):
        with pytest.raises(UsageError, match=r"^--precision bf16 is not supported here: .*; use "
                                             r"--precision fp32$"):
            check_precision("bf16", level)
    with pytest.raises(UsageError, match="--precision bf16 is not supported here"):
        Precision("bf16")


def tiny_model() -> paddle.nn.Layer:
    paddle.seed(0)
    model = GCNet(num_classes=3, backbone=ResNet18_vd(output_stride=8), gc_channels=16)
    model.eval()
    return model


def test_the_benchmark_says_not_supported_on_a_cpu_without_bf16(cpuinfo, tmp_path):
    model = tiny_model()
    image = paddle.zeros([1, 3, 32, 32])
    (row,) = deploy_rows(model, fold_batchnorm(model), image, 1, str(tmp_path / "export"),
                         cpuinfo=cpuinfo("avx512f"))
    assert row.name == f"{BF16_ROW}: not supported on this CPU (no avx512_bf16 / amx_bf16)"
    assert row.gcseg is None and row.paddleseg is None
    assert not (tmp_path / "export").exists()  # nothing was run under the name bf16


@pytest.mark.filterwarnings("ignore")
@pytest.mark.skipif(not cpu_env.cpu_supports_bf16(),
                    reason="runs Paddle Inference in bf16: needs a CPU with the instructions")
def test_the_benchmark_measures_bf16_on_a_bf16_cpu_and_says_when_it_was_not_applied(tmp_path):
    model = tiny_model()
    folded = fold_batchnorm(model)
    image = paddle.to_tensor(np.random.default_rng(0).standard_normal([1, 3, 32, 48])
                             .astype(np.float32))
    rows = deploy_rows(folded, folded, image, 1, str(tmp_path / "export"))
    if len(rows) == 1:  # the runtime's probe found bf16 computed bit for bit as fp32
        assert rows[0].name.startswith(f"{BF16_ROW}: not applied (--precision bf16: Paddle ")
        return
    timed, difference, agreement = rows
    assert timed.unit == "s" and timed.gcseg > 0 and timed.paddleseg > 0
    assert difference.name == "bf16 predictor max |logit - fp32|"
    assert 0 <= agreement.gcseg <= 100
    if difference.gcseg == 0:
        assert timed.name.endswith("(logits identical to fp32)")
    else:
        assert timed.name == BF16_ROW
