# What the datasets share unless their file says otherwise: packed samples of up to
# `max_length` tokens, the chat template applied, no system prompt, two evaluation prompts.
data_files = False  # True: `data_path` is a local JSON/JSONL file, else a Hub dataset id
use_prompt_template = True  # False: raw text (continued pretraining)
max_length = 2048
pack_to_max_length = True
system_template = None  # a SYSTEM_TEMPLATE name for the evaluation hook's system prompt
evaluation_inputs = [
    '请给我介绍五个上海的景点',
    'Please tell me five scenic spots in Shanghai',
]
evaluation_freq = 500  # iterations between evaluation chats
