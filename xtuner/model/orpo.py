"""``ORPO``: odds-ratio preference optimisation, no reference model (XTuner v0's API).

Hong, Lee and Thorne, "ORPO: Monolithic Preference Optimization without Reference Model"
(arXiv:2403.07691). The loss of a micro-batch is the negative log-likelihood of the chosen
responses (mean over their target tokens) minus ``beta`` times the mean over pairs of
``log sigmoid(log odds(chosen) - log odds(rejected))``, where the odds come from the per-token
average log-probability of each response, as in v0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .dpo import PreferenceModel
from .preference import preference_metrics

__all__ = ["ORPO", "odds_ratio_loss"]


def odds_ratio_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
    """``(log sigmoid(log odds ratio) per valid pair, log odds ratio per pair)`` from per-token
    average log-probabilities.

    ``log odds(p) = log p - log(1 - p)``; a pair whose probability rounds to 1 has no finite
    odds and is left out, as in v0.
    """
    log_odds = (chosen - rejected) - (torch.log1p(-torch.exp(chosen))
                                      - torch.log1p(-torch.exp(rejected)))
    ratio = F.logsigmoid(log_odds)
    return ratio[~torch.isnan(ratio)], log_odds


class ORPO(PreferenceModel):
    """ORPO (v0's ``xtuner.model.ORPO``).

    Args:
        llm: the model, or its config dict.
        beta: the weight of the odds-ratio term.
        **kwargs: :class:`SupervisedFinetune`'s arguments (``lora``, ``use_varlen_attn``, ...).

    Logged: ``chosen_rewards``/``rejected_rewards`` (``beta`` times the average
    log-probability), ``reward_acc``, ``reward_margin``, ``log_odds_ratio``,
    ``log_odds_chosen`` and ``nll_loss``.
    """

    def __init__(self, llm, beta: float = 0.1, **kwargs):
        super().__init__(llm, **kwargs)
        self.beta = beta

    def compute_loss(self, data: dict) -> dict:
        inputs, labels, bounds = self._pair_inputs(data)
        logps_of = self._logps_of(inputs, labels, bounds)
        with self._measured(data):
            logps = logps_of(self.llm)
        chosen, rejected = logps.pairs(average=True)
        chosen_tokens = logps.counts[0::2].sum()
        nll = -logps.sums[0::2].sum() / chosen_tokens.clamp(min=1)
        ratio, log_odds = odds_ratio_loss(chosen, rejected)
        odds_term = ratio.mean() if len(ratio) else chosen.sum() * 0
        loss = nll - self.beta * odds_term
        return {"loss": loss,
                **preference_metrics(self.beta * chosen, self.beta * rejected),
                "log_odds_ratio": odds_term.detach(),
                "log_odds_chosen": log_odds.detach().mean(),
                "nll_loss": nll.detach()}
