"""InternVL3 (``-hf`` checkpoints): 1-D RoPE LLM fed pixel-shuffled InternViT tokens, one frame per group."""

from harness.models.spec import FamilySpec, VllmRoute

SPEC = FamilySpec(
    name="internvl3",
    adapter="harness.models.internvl3:InternVL3Adapter",
    base="pooled",
    positions="1d",
    prune_stages=("post_vit", "pre_vit", "native"),
    tiny="harness.models.tiny.internvl3",
    vllm=VllmRoute(
        route="prompt_embeds",
        architecture="HarnessInternVLForConditionalGeneration",
        model_class="harness.backends.vllm.one_d:HarnessInternVLForConditionalGeneration",
    ),
    lmms_eval_model="internvl_hf",  # lmms-eval's chat internvl_hf class on -hf checkpoints, see presets.yaml
)
