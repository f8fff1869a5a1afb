# LLaVA stage 1, pre-training (feature alignment): the LLM and the vision tower stay frozen,
# only the projector learns, on the 558k BLIP/LAION/CC/SBU captions (v0's values).
_base_ = './_shared.py'
stage = 'pretrain'
stage_title = 'pre-training (projector only; LLM and vision tower frozen)'
data_path = './data/llava_data/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json'
image_folder = './data/llava_data/LLaVA-Pretrain/images'
pad_image_to_square = False
# v0's recipe: 32 captions per device, shuffled (varlen attention concatenates a batch into one
# row, so short captions waste no padding); packing would change how many a step sees.
pack_to_max_length = False
freeze_llm = True
freeze_visual_encoder = True
lr = 1e-3
batch_size = 32  # per device
