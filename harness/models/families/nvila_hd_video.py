"""NVILA-8B-HD-Video: the authors' remote-code model, which gazes and encodes gazed patches itself."""

from harness.models.spec import FamilySpec

SPEC = FamilySpec(
    name="nvila_hd_video",
    adapter="harness.models.nvila_hd_video:NvilaHDVideoAdapter",
    base="own",
    positions="1d",
    prune_stages=("post_vit", "pre_vit"),
    tiny=None,
    no_tiny_reason=(
        "the model is remote code in its checkpoint (no transformers class to build a random one "
        "from); tests/test_nvila_hd_video.py runs the adapter on a stand-in snapshot instead"
    ),
    vllm=None,
    no_vllm_reason="vLLM has no NVILA-HD-Video architecture; the transformers (remote-code) route only",
    remote_code=True,
)
