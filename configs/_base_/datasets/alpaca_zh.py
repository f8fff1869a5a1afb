# Dataset: Alpaca-zh (52k Chinese instructions, GPT-4 answers). Source, map fn, sample length
# and v0's epochs for it.
_base_ = './_shared.py'
dataset_title = 'Alpaca-zh (52k Chinese instructions, GPT-4 answers)'
data_path = 'silk-road/alpaca-data-gpt4-chinese'
dataset_map_fn = 'alpaca_zh_map_fn'
max_epochs = 3
system_template = 'alpaca'
