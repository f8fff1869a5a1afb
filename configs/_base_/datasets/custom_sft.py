# Dataset: your own chat data (OpenAI `messages` format, JSON or JSONL). Source, map fn, sample
# length and v0's epochs for it.
_base_ = './_shared.py'
dataset_title = 'your own chat data (OpenAI `messages` format, JSON or JSONL)'
data_path = '/path/to/your/data.jsonl'
data_files = True
data_format_doc = [
    '{"messages": [{"role": "system", "content": "..."},',
    '              {"role": "user", "content": "..."},',
    '              {"role": "assistant", "content": "...", "loss": false},',
    '              {"role": "user", "content": "..."},',
    '              {"role": "assistant", "content": "..."}]}',
    '`loss` (default true) says whether an assistant turn is trained on.',
]
dataset_map_fn = 'openai_map_fn'
max_epochs = 1
