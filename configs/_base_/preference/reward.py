# Reward model (v0's values: focal ranking loss, log-barrier penalty, 1 epoch so it does not
# overfit). Each leaf sets `reward_token_id`, the special token appended to every sequence whose
# score is read; LoRA/QLoRA leaves set v0's lr of 1e-4.
_base_ = './_shared.py'
preference_method = 'reward'
algorithm_title = 'Reward model'
loss_type = 'focal'  # ranking or focal
penalty_type = 'log_barrier'  # log_barrier, L2 or none
dataset_title = 'UltraFeedback (binarized, cleaned)'
data_path = 'argilla/ultrafeedback-binarized-preferences-cleaned'
dataset_map_fn = 'orpo_dpo_mix_40k_map_fn'
max_epochs = 1
lr = 2e-5
