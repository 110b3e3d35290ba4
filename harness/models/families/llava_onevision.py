"""LLaVA-OneVision / LLaVA-Video: 1-D RoPE LLM fed 2x2-pooled SigLIP tokens + one trailing newline."""

from harness.models.spec import FamilySpec, VllmRoute

SPEC = FamilySpec(
    name="llava_onevision",
    adapter="harness.models.llava_onevision:LlavaOnevisionAdapter",
    base="pooled",
    positions="1d",
    prune_stages=("post_vit", "pre_vit", "native"),
    tiny="harness.models.tiny.llava_onevision",
    vllm=VllmRoute(
        route="prompt_embeds",
        architecture="HarnessLlavaOnevisionForConditionalGeneration",
        model_class="harness.backends.vllm.one_d:HarnessLlavaOnevisionForConditionalGeneration",
    ),
    newline_tokens=1,  # the image_newline embedding after the last frame: always kept
    tower_signals=frozenset({"tower_attention"}),  # encode_video_signals (VisionZip)
    lmms_eval_model="llava_hf",  # lmms-eval's simple llava_hf class (--force_simple), see presets.yaml
)
