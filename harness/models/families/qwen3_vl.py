"""Qwen3-VL: Qwen2.5-VL's mechanics plus DeepStack rows and timestamp text; no native route yet."""

from harness.models.spec import FamilySpec, VllmRoute

SPEC = FamilySpec(
    name="qwen3_vl",
    adapter="harness.models.qwen3_vl:Qwen3VLAdapter",
    base="mrope",
    positions="mrope",
    prune_stages=("post_vit", "pre_vit"),
    tiny="harness.models.tiny.qwen3_vl",
    vllm=VllmRoute(
        route="mrope_keep_mask",
        architecture="HarnessQwen3VLForConditionalGeneration",
        model_class="harness.backends.vllm.qwen:HarnessQwen3VLForConditionalGeneration",
    ),
    lmms_eval_model="qwen3_vl",
)
