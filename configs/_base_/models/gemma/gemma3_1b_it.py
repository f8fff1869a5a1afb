# Gemma 3 1B IT (google/gemma-3-1b-it).
_base_ = './gemma3.py'
model_title = 'Gemma 3 1B IT'
pretrained_model_name_or_path = 'google/gemma-3-1b-it'
model_notes = [
    "Gated on the Hub: accept Google's license and `huggingface-cli login` first",
]
