# CLIP ViT-L/14 at 336 px (openai/clip-vit-large-patch14-336): LLaVA-1.5's vision tower.
vision_title = 'CLIP ViT-L/14-336'
visual_encoder_name_or_path = 'openai/clip-vit-large-patch14-336'
visual_encoder_type = 'CLIPVisionModel'  # a transformers class (its .from_pretrained loads it)
image_processor_type = 'CLIPImageProcessor'
image_tokens = 576  # features per image: (336 / 14) ** 2 patches
drop_cls_token = True  # CLIP outputs a class token before the patches; LLaVA drops it
