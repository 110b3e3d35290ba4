"""Qwen2.5-VL: M-RoPE LLM; pruning after the ViT merger or before the ViT (whole merge units)."""

from harness.models.spec import FamilySpec, VllmRoute

SPEC = FamilySpec(
    name="qwen2_5_vl",
    adapter="harness.models.qwen2_5_vl:Qwen25VLAdapter",
    base="mrope",
    positions="mrope",
    prune_stages=("post_vit", "pre_vit", "native"),
    tiny="harness.models.tiny.qwen2_5_vl",
    vllm=VllmRoute(
        route="mrope_keep_mask",
        architecture="HarnessQwen2_5_VLForConditionalGeneration",
        model_class="harness.backends.vllm.qwen:HarnessQwen25VLForConditionalGeneration",
    ),
    lmms_eval_model="qwen2_5_vl",
)
