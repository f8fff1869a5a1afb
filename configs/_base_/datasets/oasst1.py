# Dataset: OpenAssistant Guanaco (10k multi-turn conversations from oasst1). Source, map fn,
# sample length and v0's epochs for it.
_base_ = './_shared.py'
dataset_title = 'OpenAssistant Guanaco (10k multi-turn conversations from oasst1)'
data_path = 'timdettmers/openassistant-guanaco'
dataset_map_fn = 'oasst1_map_fn'
max_epochs = 3
