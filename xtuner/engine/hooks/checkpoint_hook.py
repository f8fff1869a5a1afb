"""``CheckpointHook``: crash-safe saving, and checkpoints that ``torch.load`` can read safely.

mmengine's hook deletes the oldest checkpoint *before* writing the new one, writes the new
one in place and then rewrites ``last_checkpoint`` in place, so a kill at the wrong moment
can leave nothing to resume from. This subclass writes ``iter_N.pth.tmp`` first, renames it
into place (atomic on POSIX), atomically replaces ``last_checkpoint``, and only then deletes
checkpoints beyond ``max_keep_ckpts``. ``xtuner train`` uses it in place of mmengine's.

It also keeps mmengine's ``HistoryBuffer`` objects out of the pickle: they pickle their
statistics methods through ``getattr``, which ``torch.load(weights_only=True)`` (the default
since torch 2.6, and what mmengine 0.10.7's resume uses) rightly refuses. The logged scalars are
saved as plain lists and rebuilt after loading.

And it stores what an exact resume needs beyond mmengine's own state (every rank's random
streams, the gradients of an unfinished accumulation window: see
:mod:`xtuner.engine.resume_state`) under the key ``xtuner_resume``.
"""
from __future__ import annotations

import os
import os.path as osp
import shutil

import numpy as np
from mmengine.dist import barrier, get_world_size, is_main_process
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook

__all__ = ["CheckpointHook", "atomic_write_text"]

_TMP_SUFFIX = ".tmp"


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path + _TMP_SUFFIX
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove(path: str) -> None:
    if osp.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif osp.exists(path):
        os.remove(path)


def history_to_plain(log_scalars: dict) -> dict:
    """``{name: HistoryBuffer}`` -> ``{name: {'log_history': [...], ...}}`` (picklable safely)."""
    from mmengine.logging import HistoryBuffer

    plain = {}
    for name, buffer in log_scalars.items():
        if isinstance(buffer, HistoryBuffer):
            logs, counts = buffer.data
            buffer = {"log_history": [float(x) for x in logs],
                      "count_history": [float(x) for x in counts],
                      "max_length": int(buffer.max_length)}
        plain[name] = buffer
    return plain


def history_from_plain(log_scalars: dict) -> dict:
    """Inverse of :func:`history_to_plain`."""
    from mmengine.logging import HistoryBuffer

    return {name: HistoryBuffer(**value) if isinstance(value, dict) else value
            for name, value in log_scalars.items()}


_RESUME_KEY = "xtuner_resume"


def _inside_deepspeed_window(runner) -> bool:
    """Whether the iteration just run leaves a DeepSpeed accumulation window open."""
    config = getattr(getattr(runner, "strategy", None), "config", None)
    if not isinstance(config, dict):
        return False
    steps = int(config.get("gradient_accumulation_steps", 1) or 1)
    done = runner.iter + 1
    return steps > 1 and done % steps != 0 and done < runner.max_iters


class CheckpointHook(MMEngineCheckpointHook):
    """mmengine's ``CheckpointHook`` with crash-safe, safely loadable checkpoints that resume
    exactly (same args)."""

    _deferred = False  # a save fell inside a DeepSpeed accumulation window

    _resume_state = None  # gathered from every rank just before a save

    def _gather_resume_state(self, runner) -> None:
        """Collect what an exact resume needs, on every rank (collective calls): mmengine's
        plain runner writes the checkpoint, and calls ``before_save_checkpoint``, on rank 0
        only."""
        from xtuner.engine.resume_state import accumulated_gradients, capture_rng_state
        from xtuner.model.utils import unwrap_model

        self._resume_state = {"rng": capture_rng_state(),
                              "grads": accumulated_gradients(unwrap_model(runner.model))}

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._resume_state is not None:
            checkpoint[_RESUME_KEY] = self._resume_state
            self._resume_state = None
        hub = checkpoint.get("message_hub")
        if hub and "log_scalars" in hub:
            hub["log_scalars"] = history_to_plain(hub["log_scalars"])
        if hub and "runtime_info" in hub:
            # e.g. `eta` is a numpy float: store Python numbers instead.
            hub["runtime_info"] = {k: v.item() if isinstance(v, np.generic) else v
                                   for k, v in hub["runtime_info"].items()}

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        """mmengine's rule for when to save, except that under DeepSpeed a checkpoint due
        inside a gradient-accumulation window is taken at the window's end: DeepSpeed keeps
        the partial gradients in its own buffers, so a resume from inside the window would
        lose them (the plain runner stores them in the checkpoint instead)."""
        if self.by_epoch:
            return
        due = (self.every_n_train_iters(runner, self.interval, self.save_begin)
               or (self.save_last and self.is_last_train_iter(runner)) or self._deferred)
        if due and _inside_deepspeed_window(runner):
            if not self._deferred:
                runner.logger.info(f"Checkpoint due at iteration {runner.iter + 1} is taken "
                                   "at the end of DeepSpeed's gradient-accumulation window")
            self._deferred = True
            return
        if due:
            self._deferred = False
            runner.logger.info(f"Saving checkpoint at {runner.iter + 1} iterations")
            self._save_checkpoint(runner)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        hub = checkpoint.get("message_hub")
        if hub and "log_scalars" in hub:
            hub["log_scalars"] = history_from_plain(hub["log_scalars"])
        state = checkpoint.get(_RESUME_KEY)
        if state is None or not runner._resume:  # `load_from` only: weights, not the run
            return
        from xtuner.engine.resume_state import restore_gradients
        from xtuner.model.utils import unwrap_model

        restore_gradients(unwrap_model(runner.model), state["grads"])
        # Restored by the train loop once it has skipped the trained batches (building the
        # data iterator draws from the random streams).
        runner.train_loop.resume_rng_state = state["rng"]

    def _save_checkpoint_with_step(self, runner, step, meta):
        self._gather_resume_state(runner)
        if self.file_backend.name != "LocalBackend":
            return super()._save_checkpoint_with_step(runner, step, meta)
        filename = self.filename_tmpl.format(step)
        final_path = osp.join(self.out_dir, filename)
        stale: list[int] = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            # `keep_ckpt_ids` is a deque with maxlen: take the oldest out before appending.
            while len(self.keep_ckpt_ids) >= self.max_keep_ckpts:
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        self.last_ckpt = final_path
        runner.message_hub.update_info("last_ckpt", final_path)

        tmp_name = filename + _TMP_SUFFIX
        if is_main_process():
            _remove(osp.join(self.out_dir, tmp_name))  # left over from a killed save
        runner.save_checkpoint(
            self.out_dir, tmp_name, self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if get_world_size() > 1:
            barrier()  # every rank's shard of a DeepSpeed checkpoint is written
        if not is_main_process():
            return
        _remove(final_path)
        os.replace(osp.join(self.out_dir, tmp_name), final_path)
        atomic_write_text(osp.join(runner.work_dir, "last_checkpoint"), final_path)
        for old in stale:
            _remove(osp.join(self.out_dir, self.filename_tmpl.format(old)))
