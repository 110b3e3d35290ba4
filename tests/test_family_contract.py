"""The family contract, run over EVERY registered model family (harness/models/registry.py).

For each family: its spec is complete and consistent; its adapter subclasses the base the spec
declares and implements every method of it; its vLLM route is present (and its vLLM class
defined where the spec says) or explicitly None; its tiny model builds; a keep-all selection
through the adapter answers exactly as the stock model, at every prune stage the spec lists
(except ``native``, which needs AutoGaze; tests/test_native_*.py cover it).

A test-only family added through the steps of docs/contributing.md (an adapter file, a spec
file, one registry line) passes the same checks and is seen by the runner's config, which is
what shows those steps are all there is. Deliberately incomplete specs and adapters are refused.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.models import registry
from harness.models.base import ModelAdapter, MRopeAdapter
from harness.models.pooled import PooledAdapter
from harness.models.spec import BASE_CLASSES, FamilySpec, SpecError, VllmRoute
from harness.models.tiny import build_tiny_model
from harness.pruning.native_gaze import NativeTarget
from tests.adapter_helpers import assert_keep_all_equals_stock

PROMPT = "What is happening in the video? Answer briefly."
FPS = 2.0
FAMILIES = sorted(registry.FAMILIES)
TINY_FAMILIES = [f for f in FAMILIES if registry.get_spec(f).tiny is not None]


def check_spec(family: str) -> FamilySpec:
    """Everything about ``family`` that needs no model weights (raises AssertionError/SpecError)."""
    spec = registry.get_spec(family)
    cls = registry.get_adapter_class(family)  # checks base subclass, abstract methods, name
    base = {"mrope": MRopeAdapter, "pooled": PooledAdapter, "own": ModelAdapter}[spec.base]
    assert issubclass(cls, base) and not inspect.isabstract(cls)
    assert set(BASE_CLASSES) == {"mrope", "pooled", "own"}
    if spec.base == "pooled":
        assert cls.newline_tokens == spec.newline_tokens, "adapter and spec disagree on newline tokens"
        assert cls.modality in ("video", "image") and cls.pixel_key
    if spec.base != "own":
        assert isinstance(cls.model_class, type), "the vLLM routes build model_class"
    # the vLLM route: present with its class defined where the spec says, or explicitly None
    from harness.backends.vllm import routes
    from harness.backends.vllm.plugin import architectures

    if spec.vllm is None:
        assert spec.no_vllm_reason and family not in routes()
    else:
        assert routes()[family] == (spec.vllm.route, spec.vllm.architecture)
        assert architectures()[spec.vllm.architecture] == spec.vllm.model_class
        module, name = spec.vllm.model_class.split(":")
        source = Path(importlib.util.find_spec(module).origin).read_text()  # no vLLM import needed
        assert name in {n.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef)}
    if spec.tiny is None:
        assert spec.no_tiny_reason
    else:
        assert importlib.util.find_spec(spec.tiny) is not None, f"tiny builder {spec.tiny} missing"
    from harness.runner.config import model_families

    assert family in model_families()
    assert (family in registry.REMOTE_CODE_FAMILIES) == spec.remote_code
    # tower signals: a family that lists them overrides the base's "none" (PooledAdapter)
    if spec.tower_signals:
        assert cls.encode_video_signals is not PooledAdapter.encode_video_signals
    return spec


def check_keep_all(family: str, model_dir: Path) -> None:
    spec = registry.get_spec(family)
    adapter = registry.get_adapter_class(family).from_pretrained(str(model_dir))
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 64, 80, 3), dtype=np.uint8)
    for stage in ("post_vit", "pre_vit"):
        if stage in spec.prune_stages:
            assert_keep_all_equals_stock(adapter, frames, PROMPT, fps=FPS, prune_stage=stage)
    # the native route exists exactly when the spec lists it (what AutoGaze gazes at for the tower)
    square = (4, 112, 112)  # AutoGaze tiles are square: Qwen's native route refuses other frames
    if "native" in spec.prune_stages:
        assert isinstance(adapter.native_target(*square), NativeTarget)
    elif hasattr(adapter, "native_target"):
        with pytest.raises(ValueError, match="native"):  # the runner turns it into one clear line
            adapter.native_target(*square)


@pytest.mark.parametrize("family", FAMILIES)
def test_spec_is_complete_and_consistent(family):
    check_spec(family)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_tiny_model_keep_all_equals_stock(family, tmp_path):
    check_keep_all(family, build_tiny_model(family, tmp_path / family, seed=0))


def test_families_without_tiny_model_say_why_and_are_tested_elsewhere():
    for family in sorted(set(FAMILIES) - set(TINY_FAMILIES)):
        spec = registry.get_spec(family)
        assert len(spec.no_tiny_reason) > 20
        assert (Path(__file__).parent / f"test_{family}.py").is_file(), f"{family} has no test file"


# -- a test-only family, added as docs/contributing.md says ------------------------------------

TOY_ADAPTER = '''
"""A test-only family: LLaVA-OneVision's adapter under another name."""

from harness.models.llava_onevision import LlavaOnevisionAdapter


class ToyAdapter(LlavaOnevisionAdapter):
    name = "toy_family"
'''

TOY_SPEC = '''
from harness.models.spec import FamilySpec

SPEC = FamilySpec(
    name="toy_family",
    adapter="toy_family_adapter:ToyAdapter",
    base="pooled",
    positions="1d",
    prune_stages=("post_vit", "pre_vit", "native"),
    tiny="harness.models.tiny.llava_onevision",
    vllm=None,
    no_vllm_reason="test-only family",
    newline_tokens=1,
)
'''


@pytest.fixture
def toy_family(tmp_path, monkeypatch):
    """The documented steps: an adapter file, a spec file, ONE registry line (nothing else)."""
    (tmp_path / "toy_family_adapter.py").write_text(textwrap.dedent(TOY_ADAPTER))
    (tmp_path / "toy_family_spec.py").write_text(textwrap.dedent(TOY_SPEC))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.FAMILIES, "toy_family", "toy_family_spec")
    return "toy_family"


def test_a_family_added_by_the_documented_steps_passes_the_contract(toy_family, tmp_path):
    spec = check_spec(toy_family)
    assert spec.adapter == "toy_family_adapter:ToyAdapter"
    from harness.models.tiny import BUILDERS

    assert BUILDERS[toy_family] == "harness.models.tiny.llava_onevision"
    check_keep_all(toy_family, build_tiny_model(toy_family, tmp_path / "toy", seed=0))


def test_the_contract_check_fails_on_a_wrong_adapter(toy_family, tmp_path, monkeypatch):
    """The keep-all check can fail: an adapter that feeds the LLM its tokens in reverse order."""
    import toy_family_adapter

    def reversed_prune(self, inputs, features, selection, *, only_kept=False):
        pruned = toy_family_adapter.LlavaOnevisionAdapter.prune(self, inputs, features, selection, only_kept=only_kept)
        encoded = pruned.model_kwargs["mm_encoder_outputs"]["video"]
        encoded.pooler_output = encoded.pooler_output.flip(-2)  # (..., tokens, D)
        return pruned

    monkeypatch.setattr(toy_family_adapter.ToyAdapter, "prune", reversed_prune)
    with pytest.raises(AssertionError):
        check_keep_all(toy_family, build_tiny_model(toy_family, tmp_path / "toy", seed=0))


# -- incomplete or inconsistent families are refused -------------------------------------------


def test_an_adapter_missing_a_declared_method_is_refused_at_import():
    with pytest.raises(TypeError, match="encode_native.*encode_pre_vit|encode_pre_vit"):

        class HalfDone(PooledAdapter):  # noqa: F841 - the class statement itself must fail
            name = "half_done"

            @classmethod
            def from_pretrained(cls, path_or_id, device="cpu", dtype="auto", **kwargs):
                raise NotImplementedError

            def token_geometry(self, num_frames, height, width):
                raise NotImplementedError

    class StillAbstract(MRopeAdapter, abstract=True):  # a base meant to stay abstract is allowed
        pass


def spec_args(**change):
    args = dict(
        name="x", adapter="m:C", base="pooled", positions="1d", prune_stages=("post_vit",),
        tiny="harness.models.tiny.llava_onevision", vllm=None, no_vllm_reason="none",
    )
    return {**args, **change}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"tiny": None}, "no_tiny_reason"),
        ({"no_vllm_reason": ""}, "no_vllm_reason"),
        ({"base": "mrope"}, "does not go with"),
        ({"prune_stages": ("pre_vit",)}, "post_vit"),
        ({"prune_stages": ("post_vit", "during_vit")}, "post_vit"),
        ({"adapter": "no_class_here"}, "module:Class"),
        ({"vllm": VllmRoute("mrope_keep_mask", "A", "m:A")}, "prompt_embeds route"),
        ({"base": "own", "vllm": VllmRoute("prompt_embeds", "A", "m:A")}, "not base 'own'"),
        ({"name": "not a name"}, "identifier"),
    ],
)
def test_an_incomplete_or_inconsistent_spec_is_refused(change, message):
    FamilySpec(**spec_args())  # the unchanged arguments are a valid spec
    with pytest.raises(SpecError, match=message):
        FamilySpec(**spec_args(**change))
    with pytest.raises(TypeError):
        FamilySpec(**{k: v for k, v in spec_args().items() if k != "vllm"})  # vllm must be given


def test_the_registry_refuses_a_spec_that_does_not_match_its_adapter(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    wrong_base = spec_args(name="wrong_base", adapter="harness.models.qwen2_5_vl:Qwen25VLAdapter")
    (tmp_path / "wrong_base_spec.py").write_text(
        f"from harness.models.spec import FamilySpec\nSPEC = FamilySpec(**{wrong_base!r})\n"
    )
    (tmp_path / "no_spec.py").write_text("X = 1\n")
    monkeypatch.setitem(registry.FAMILIES, "wrong_base", "wrong_base_spec")
    monkeypatch.setitem(registry.FAMILIES, "no_spec", "no_spec")
    monkeypatch.setitem(registry.FAMILIES, "renamed", "wrong_base_spec")
    with pytest.raises(SpecError, match="not a subclass of PooledAdapter"):
        registry.get_adapter_class("wrong_base")
    with pytest.raises(SpecError, match="defines no SPEC"):
        registry.get_spec("no_spec")
    with pytest.raises(SpecError, match="registry lists it as 'renamed'"):
        registry.get_spec("renamed")
