# LLaVA stage 2, instruction tuning: QLoRA on the LLM (r512/a256) and LoRA on the vision tower
# (r64/a16), starting from the pre-trained projector (`pretrained_pth`, set by each leaf), on
# LLaVA-1.5's 665k mixture (v0's values).
_base_ = './_shared.py'
stage = 'finetune'
stage_title = 'instruction tuning (QLoRA LLM + LoRA vision tower)'
data_path = './data/llava_data/LLaVA-Instruct-150K/llava_v1_5_mix665k.json'
image_folder = './data/llava_data/llava_images'
pad_image_to_square = True
# Default: packed rows of `context_length` tokens with varlen attention (faster: nothing is
# padded). False: v0's batches of whole samples grouped by modality_length
# (LengthGroupedSampler); the rendered file switches sampler with this one line.
pack_to_max_length = True
freeze_llm = True  # the adapters of llm_lora still train
freeze_visual_encoder = True  # likewise visual_encoder_lora's
lr = 2e-4
batch_size = 16  # per device (packed rows when packing, samples otherwise)
llm_lora = dict(r=512, lora_alpha=256, lora_dropout=0.05, bias='none', task_type='CAUSAL_LM')
visual_encoder_lora = dict(r=64, lora_alpha=16, lora_dropout=0.05, bias='none')
quantization_config = dict(  # transformers BitsAndBytesConfig arguments (4-bit NF4 LLM)
    load_in_4bit=True,
    load_in_8bit=False,
    llm_int8_threshold=6.0,
    llm_int8_has_fp16_weight=False,
    bnb_4bit_compute_dtype='bfloat16',  # written as torch.bfloat16
    bnb_4bit_use_double_quant=True,
    bnb_4bit_quant_type='nf4',
)
