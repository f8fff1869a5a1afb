# SigLIP So400m/14 at 384 px (google/siglip-so400m-patch14-384).
vision_title = 'SigLIP So400m/14-384'
visual_encoder_name_or_path = 'google/siglip-so400m-patch14-384'
visual_encoder_type = 'SiglipVisionModel'  # a transformers class (its .from_pretrained loads it)
image_processor_type = 'SiglipImageProcessor'
image_tokens = 729  # features per image: (384 // 14) ** 2 patches
drop_cls_token = False  # SigLIP has no class token: every output token is a patch
