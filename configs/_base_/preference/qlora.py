# QLoRA: LoRA (as in lora.py) on a model quantized to 4-bit NF4 with bitsandbytes.
_base_ = './lora.py'
method_title = 'QLoRA'
quantization_config = dict(  # transformers BitsAndBytesConfig arguments
    load_in_4bit=True,
    load_in_8bit=False,
    llm_int8_threshold=6.0,
    llm_int8_has_fp16_weight=False,
    bnb_4bit_compute_dtype='bfloat16',  # written as torch.bfloat16
    bnb_4bit_use_double_quant=True,
    bnb_4bit_quant_type='nf4',
)
