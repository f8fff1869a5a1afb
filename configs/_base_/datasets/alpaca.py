# Dataset: Alpaca (52k English instructions). Source, map fn, sample length and v0's epochs for
# it.
_base_ = './_shared.py'
dataset_title = 'Alpaca (52k English instructions)'
data_path = 'tatsu-lab/alpaca'
dataset_map_fn = 'alpaca_map_fn'
max_epochs = 3
system_template = 'alpaca'
