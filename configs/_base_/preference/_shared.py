# What DPO, ORPO and reward-model training share (v0's values): pairs of at most `max_length`
# tokens packed two rows' worth at a time for varlen attention, one packed row per device,
# 16 accumulation steps; rendered by configs/_templates/preference.py.
_base_ = ['../schedules/adamw_cosine.py', '../default_runtime.py']
config_template = 'preference'  # configs/_templates/preference.py renders these leaves
data_files = False  # True: `data_path` is a local JSON/JSONL file, else a Hub dataset id
max_length = 2048  # tokens of one prompt + response (v0)
max_packed_length_factor = 2  # a packed row holds up to this many times max_length (v0)
num_proc = 32  # processes for the map fn and tokenization
evaluation_freq = 500  # iterations between evaluation chats
system_template = 'alpaca'  # SYSTEM_TEMPLATE name for the evaluation chats (v0)
evaluation_inputs = [
    ('What famous British author, known for his tales of mystery and the macabre, shares his '
     'initials with a common abbreviation for "rest in peace"?'),
    'Please tell me five scenic spots in Shanghai',
    '890729 - 425663? Only respond with math and no words.',
]
