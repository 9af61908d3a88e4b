"""The training loop: continual strategies, a bounded shuffle, the stop flag and NaN guards.

Strategies: ``naive`` (new data only), ``replay`` (a reservoir of past rows mixed into every
batch), ``ewc`` (elastic weight consolidation: a quadratic penalty, weighted by the Fisher
information of the parent's data, pulling weights towards the parent's), ``ewc+replay`` (both).

How long: a fixed number of passes when ``epochs`` is set; otherwise (the default) the run adapts
to the increment — at least ``min_steps`` optimizer steps and one pass over the new rows, at most
``max_epochs`` passes, stopping early once the loss on validation rows (the increment's hold-out,
or a split of the increment) has not improved for ``patience`` evaluations, and keeping the weights
of the best evaluation. A fixed epoch count underfits a small increment (5 passes over 250 rows
are 20 steps) and overfits a large one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lifelong_cli.errors import CheckFailedError


class TrainingDivergedError(CheckFailedError):
    """The loss or a weight became NaN/Inf: no version is written."""


@dataclass
class TrainConfig:
    strategy: str
    epochs: int | None  # None: adaptive (min_steps, max_epochs, early stopping on the validation rows)
    batch_size: int
    learning_rate: float
    grad_clip: float
    shuffle_buffer: int
    frozen_layers: list[str]
    new_ratio: float
    ewc_lambda: float
    seed: int
    task: str
    heartbeat_seconds: float
    threads: int = 1
    min_steps: int = 0
    max_epochs: int = 100
    patience: int = 5


@dataclass
class EwcAnchor:
    fisher: dict[str, torch.Tensor]
    params: dict[str, torch.Tensor]

    def penalty(self, model: nn.Module) -> torch.Tensor:
        total = torch.zeros(())
        for name, p in model.named_parameters():
            if name in self.fisher:
                total = total + (self.fisher[name] * (p - self.params[name]) ** 2).sum()
        return total


def loss_fn(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return nn.functional.cross_entropy if task == "classification" else nn.functional.mse_loss


def fisher_information(model: nn.Module, x: np.ndarray, y: np.ndarray, task: str) -> EwcAnchor:
    """Diagonal empirical Fisher (mean squared per-example gradient) and the anchor weights."""
    from torch.func import functional_call, grad, vmap

    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    lf = loss_fn(task)

    def one(p, xi, yi):
        out = functional_call(model, p, (xi.unsqueeze(0),))
        return lf(out, yi.unsqueeze(0))

    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    fisher = {k: torch.zeros_like(v) for k, v in params.items()}
    for start in range(0, len(xs), 256):
        g = vmap(grad(one), in_dims=(None, 0, 0))(params, xs[start:start + 256], ys[start:start + 256])
        for k in fisher:
            fisher[k] += (g[k] ** 2).sum(0)
    n = max(1, len(xs))
    return EwcAnchor({k: v / n for k, v in fisher.items()}, {k: v.clone() for k, v in params.items()})


def _windows(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of 0..n-1 that only shuffles within consecutive windows (streams are time-ordered)."""
    idx = np.arange(n)
    for s in range(0, n, size):
        rng.shuffle(idx[s:s + size])
    return idx


def _evaluate(model: nn.Module, lf, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        loss = float(lf(model(x), y))
    model.train()
    return loss


def fit(model: nn.Module, x_new: np.ndarray, y_new: np.ndarray, cfg: TrainConfig, *,
        x_replay: np.ndarray | None = None, y_replay: np.ndarray | None = None, ewc: EwcAnchor | None = None,
        optimizer_state: dict | None = None, check_in: Callable[[int], None] | None = None,
        inject_nan_at_step: int | None = None, x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None) -> tuple[torch.optim.Optimizer, dict[str, float]]:
    """Train in place. ``check_in(step)`` runs at least every ``heartbeat_seconds`` (lease + stop flag).
    ``x_val``/``y_val``: rows never trained on here, for early stopping (adaptive runs only)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)  # small tabular models: one thread beats two (less sync overhead)
    rng = np.random.default_rng(cfg.seed)
    for name, p in model.named_parameters():
        if any(name.startswith(prefix) for prefix in cfg.frozen_layers):
            p.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=cfg.learning_rate)
    # the parent's Adam moments carry over, unless the parameter layout changed (e.g. frozen layers)
    if optimizer_state and [len(g["params"]) for g in optimizer_state["param_groups"]] == [len(trainable)]:
        opt.load_state_dict(optimizer_state)
        for g in opt.param_groups:
            g["lr"] = cfg.learning_rate
    lf = loss_fn(cfg.task)
    use_replay = cfg.strategy in ("replay", "ewc+replay") and x_replay is not None and len(x_replay) > 0
    use_ewc = cfg.strategy in ("ewc", "ewc+replay") and ewc is not None
    # every step: a full batch of new rows, plus replayed rows on top in the ratio new_ratio asks for
    # (so replay does not double the number of steps over the new data)
    b_new = cfg.batch_size
    b_old = max(1, round(cfg.batch_size * (1 - cfg.new_ratio) / cfg.new_ratio)) if use_replay and cfg.new_ratio < 1 else 0
    xn, yn = torch.from_numpy(x_new), torch.from_numpy(y_new)
    xr = torch.from_numpy(x_replay) if use_replay else None
    yr = torch.from_numpy(y_replay) if use_replay else None
    if use_ewc:
        anchored = [(p, ewc.fisher[n], ewc.params[n]) for n, p in model.named_parameters()
                    if n in ewc.fisher and p.requires_grad]
    per_epoch = max(1, -(-len(xn) // b_new))
    if cfg.epochs is not None:
        min_steps = max_steps = cfg.epochs * per_epoch
    else:
        min_steps = max(cfg.min_steps, per_epoch)
        max_steps = max(min_steps, cfg.max_epochs * per_epoch)
    early = cfg.epochs is None and x_val is not None and len(x_val) > 0
    if early:
        xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val)
        eval_every = min(max(per_epoch, 20), 200)
        best_loss, best_step, best_state, stale = _evaluate(model, lf, xv, yv), 0, None, 0
    step, last_check, losses = 0, time.monotonic(), []
    stopped_early = False
    t0 = time.monotonic()
    model.train()
    epoch = 0
    while step < max_steps and not stopped_early:
        order = _windows(len(xn), cfg.shuffle_buffer, rng)
        epoch_loss, batches = 0.0, 0
        for s in range(0, len(order), b_new):
            idx = torch.from_numpy(order[s:s + b_new])
            xb, yb = xn[idx], yn[idx]
            if b_old:
                r = torch.from_numpy(rng.integers(0, len(xr), b_old))
                xb, yb = torch.cat([xb, xr[r]]), torch.cat([yb, yr[r]])
            out = model(xb)
            loss = lf(out, yb)
            step += 1
            if inject_nan_at_step is not None and step >= inject_nan_at_step:
                loss = loss * float("nan")
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"training diverged: the loss became {loss.item()} at step {step} "
                                            f"(epoch {epoch + 1}); no version written",
                                            hint="lower training.learning_rate or check the data (`llctl drift`)",
                                            step=step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if use_ewc:  # the gradient of (λ/2)·Σ F·(θ−θ*)² in closed form, λ·F·(θ−θ*): no autograd graph per step
                with torch.no_grad():
                    for p, fisher, anchor in anchored:
                        if p.grad is not None:
                            p.grad.add_(fisher * (p - anchor), alpha=cfg.ewc_lambda)
            nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            opt.step()
            if step % 50 == 0:  # a non-finite weight makes the next loss non-finite too; this is the backstop
                _check_weights(model, step)
            epoch_loss += loss.item()
            batches += 1
            if check_in and time.monotonic() - last_check >= cfg.heartbeat_seconds:
                check_in(step)
                last_check = time.monotonic()
            if early and (step % eval_every == 0 or step == max_steps):
                v = _evaluate(model, lf, xv, yv)
                if v < best_loss - 1e-4:
                    best_loss, best_step, stale = v, step, 0
                    best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
                else:
                    stale += 1
                if step >= min_steps and stale >= cfg.patience:
                    stopped_early = True
            if step >= max_steps or stopped_early:
                break
        losses.append(epoch_loss / max(1, batches))
        epoch += 1
    extra: dict[str, float] = {}
    if early:
        if best_state is not None:  # the best evaluation's weights (none beat the start: the last ones stay)
            model.load_state_dict(best_state)
        extra = {"val_rows": len(xv), "val_loss": best_loss, "best_step": best_step, "stopped_early": stopped_early}
    _check_weights(model, step)
    if check_in:
        check_in(step)
    model.eval()
    return opt, {"steps": step, "epochs": round(step / per_epoch, 2), "learning_rate": cfg.learning_rate,
                 "final_loss": losses[-1] if losses else float("nan"),
                 "first_epoch_loss": losses[0] if losses else float("nan"), "fit_seconds": time.monotonic() - t0,
                 **extra}


def _check_weights(model: nn.Module, step: int) -> None:
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise TrainingDivergedError(f"training diverged: weight {name} became non-finite by step {step}; "
                                        "no version written", hint="lower training.learning_rate", step=step)


def predict_scores(model: nn.Module, x: np.ndarray, task: str) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(x))
        return torch.softmax(out, 1).numpy() if task == "classification" else out.numpy()


def reservoir_keep(n_old_seen: int, n_new: int, buffer_size: int, rng: np.random.Generator,
                   old_count: int) -> tuple[int, int]:
    """How many of the new rows and of the old buffer to keep so that every row seen so far
    had the same chance of being in the buffer (a reservoir sample over the whole stream)."""
    total = n_old_seen + n_new
    if total <= buffer_size:
        return n_new, old_count
    k_new = int(rng.hypergeometric(n_new, max(n_old_seen, 0), buffer_size)) if n_old_seen else buffer_size
    k_new = min(k_new, n_new)
    return k_new, min(old_count, buffer_size - k_new)
