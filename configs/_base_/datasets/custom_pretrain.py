# Dataset: your own raw text (continued pretraining, JSON or JSONL). Source, map fn, sample
# length and v0's epochs for it.
_base_ = './_shared.py'
dataset_title = 'your own raw text (continued pretraining, JSON or JSONL)'
data_path = '/path/to/your/data.jsonl'
data_files = True
data_format_doc = [
    '{"text": "..."}',
    'The text is trained on as is: no chat template, no EOS between documents.',
]
dataset_map_fn = 'pretrain_map_fn'
use_prompt_template = False
max_epochs = 1
evaluation_inputs = [
    '上海是',
    'Shanghai is',
]
