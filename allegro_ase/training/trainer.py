"""The training loop: statistics → model → epochs with EMA, schedule, early stopping, resume.

A fine-tuning run (``init`` in the config) starts from an initial model's weights instead of
random ones; :mod:`allegro_ase.training.initial_model` loads it and freezes parameters.

Files written to ``output_dir``:

=================== ==================================================================
``config.yaml``      the training config as run
``split.json``       train/val/test frame indices and the dataset's frame count
``model.pt``         the EMA weights with the best validation loss (our checkpoint format)
``trainer_state.pt`` everything needed to resume after an interruption (written every epoch)
``metrics.csv``      one row per epoch: losses, validation MAE/RMSE, learning rate, time
``metrics.json``     the final summary: best epoch, validation and test errors, time
=================== ==================================================================

Running the same config again resumes from ``trainer_state.pt``; a finished run is left alone.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import time
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from ..calculator import resolve_device
from ..io import load_model, save_model
from ..models import build_model
from .config import TrainConfig
from .data import join
from .evaluation import evaluate, loss_terms, predict
from .initial_model import freeze_parameters, load_initial_weights
from .preparation import PreparedData, prepare

STATE_FILE = "trainer_state.pt"
RESUMABLE_CHANGES = {"max_epochs", "early_stopping", "device", "output_dir"}


class Trainer:
    """Trains one model as described by a :class:`TrainConfig`; see the module docstring.

    Parameters
    ----------
    config : TrainConfig
        The run.
    data : PreparedData or None
        Prepared graphs (read from ``config.dataset`` when None).
    progress : bool
        Show a tqdm progress bar with the running losses.
    """

    def __init__(
        self, config: TrainConfig, data: PreparedData | None = None, progress: bool = True
    ):
        self.config = config
        self.out = Path(config.output_dir)
        self.device = resolve_device(config.device)
        self.data = prepare(config) if data is None else data
        self.progress = progress
        self.architecture = self.data.architecture or config.architecture
        self.model = build_model(self.architecture, self.data.model_config)
        self.frozen: list[str] = []
        if self.data.initial_model is not None:
            load_initial_weights(self.model, self.data.initial_model)
            self.frozen = freeze_parameters(self.model, config.init.freeze)
        self.model.to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[
            config.optimizer.name
        ]
        self.optimizer = optimizer_class(
            params, lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay
        )
        if config.schedule.name == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer,
                factor=config.schedule.factor,
                patience=config.schedule.patience,
                threshold=config.schedule.threshold,
                min_lr=config.schedule.min_lr,
            )
        else:
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=config.max_epochs, eta_min=config.schedule.min_lr
            )
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.step = 0
        self.best = {"val_loss": float("inf"), "epoch": -1}
        self.bad_epochs = 0
        self.elapsed = 0.0
        self.finished = False

    # ----- one epoch -------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        """One pass over the shuffled training set; returns mean loss terms."""
        train = self.data.graphs["train"]
        order = torch.randperm(len(train), generator=self.shuffle).tolist()
        size = self.config.batch_size
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        sums: dict[str, float] = {}
        bar = tqdm(
            batches,
            desc=f"epoch {self.epoch + 1}",
            disable=None if self.progress else True,
            leave=False,
            mininterval=2.0,
        )
        self.model.train()
        for k, indices in enumerate(bar, start=1):
            batch = join([train[i] for i in indices]).to(self.device)
            terms = loss_terms(
                predict(self.model, batch, create_graph=True), batch, self.config.loss
            )
            self.optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            if self.config.grad_clip_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
            self.optimizer.step()
            self.update_ema()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.item()
            bar.set_postfix(
                loss=f"{sums['total'] / k:.3g}", f_rmse=f"{1e3 * (sums['forces'] / k) ** 0.5:.1f}"
            )
        return {f"train_{name}": value / len(batches) for name, value in sums.items()}

    def update_ema(self) -> None:
        """EMA of the trained weights, with the usual warm-up min(decay, (1 + n) / (10 + n))."""
        self.step += 1
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for ema, live in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                if live.requires_grad:  # frozen parameters stay exactly as they are
                    ema.lerp_(live, 1.0 - decay)

    def validation_loss(self, metrics: dict[str, float]) -> float:
        """Return the configured loss of validation errors (RMSE converted back to eV units)."""
        weights = self.config.loss
        loss = 0.0
        for name in ("energy_per_atom", "forces", "stress"):
            if f"{name}_rmse" in metrics and getattr(weights, name):
                loss += getattr(weights, name) * (metrics[f"{name}_rmse"] / 1000.0) ** 2
        return loss

    # ----- the run ---------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train until ``max_epochs``, early stopping or the learning-rate floor; return the summary."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.write_run_files()
        if (self.out / STATE_FILE).exists():
            self.load_state()
        if self.progress and self.config.init is not None:
            print(self.describe_init(), flush=True)
        while not self.finished:
            start = time.perf_counter()
            row = {"epoch": self.epoch + 1, "lr": self.optimizer.param_groups[0]["lr"]}
            row.update(self.train_epoch())
            val = evaluate(self.ema, self.data.graphs["val"], self.config.batch_size, self.device)
            row.update({f"val_{k}": v for k, v in val.summary().items()})
            row["val_loss"] = self.validation_loss(val.summary())
            self.epoch += 1
            self.after_epoch(row["val_loss"])
            self.elapsed += time.perf_counter() - start
            row["elapsed_s"] = round(self.elapsed, 1)
            self.append_metrics(row)
            self.save_state()
            if self.progress:
                print(self.describe(row), flush=True)
        return self.summary()

    def after_epoch(self, val_loss: float) -> None:
        """Keep the best EMA model, step the schedule and decide whether to stop."""
        if val_loss < self.best["val_loss"]:
            self.best = {"val_loss": val_loss, "epoch": self.epoch}
            self.bad_epochs = 0
            save_model(self.ema, self.out / "model.pt")
        else:
            self.bad_epochs += 1
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        else:
            self.scheduler.step()
        self.finished = self.should_stop()

    def should_stop(self) -> bool:
        """``max_epochs`` reached, no improvement for ``patience`` epochs, or rate below the floor."""
        stop = self.config.early_stopping
        return (
            self.epoch >= self.config.max_epochs
            or self.bad_epochs >= stop.patience
            or self.optimizer.param_groups[0]["lr"] < stop.min_lr
        )

    def summary(self) -> dict:
        """Best epoch, validation and test errors of the saved model; written to metrics.json."""
        best = load_model(self.out / "model.pt").to(self.device)
        summary = {
            "best_epoch": self.best["epoch"],
            "epochs_run": self.epoch,
            "train_time_s": round(self.elapsed, 1),
            "device": str(self.device),
            "torch_threads": torch.get_num_threads(),
            "num_frames": {name: len(g) for name, g in self.data.graphs.items()},
        }
        for name in ("val", "test"):
            if self.data.graphs[name]:
                metrics = evaluate(
                    best, self.data.graphs[name], self.config.batch_size, self.device
                )
                summary[name] = metrics.summary()
        (self.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    # ----- files -----------------------------------------------------------------------------
    def write_run_files(self) -> None:
        """config.yaml and split.json; a resumed run must have the same data, model and optimiser.

        Only the stopping rules (``max_epochs``, ``early_stopping``) and ``device`` may change
        between a run and its continuation. The saved config is read through the current
        ``TrainConfig``, so a setting added to it since (with a default that keeps the old
        behaviour) does not count as a change.
        """
        config = self.config.to_dict()
        split = {"num_frames": sum(len(v) for v in self.data.splits.values()), **self.data.splits}
        if (self.out / STATE_FILE).exists():
            saved = yaml.safe_load((self.out / "config.yaml").read_text())
            before = TrainConfig.from_dict(saved).to_dict()
            changed = [
                key
                for key in config
                if key not in RESUMABLE_CHANGES and before.get(key) != config[key]
            ]
            if changed or json.loads((self.out / "split.json").read_text()) != split:
                raise RuntimeError(
                    f"{self.out} holds a run with a different {changed or 'split'}: choose a new "
                    "output_dir, or delete the old one to start again."
                )
        (self.out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (self.out / "split.json").write_text(json.dumps(split))

    def append_metrics(self, row: dict) -> None:
        """Append one epoch to metrics.csv (the header comes from the first row)."""
        path = self.out / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)

    def save_state(self) -> None:
        """Write everything needed to resume (atomically)."""
        state = {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "shuffle": self.shuffle.get_state(),
            "counters": torch.tensor(
                [self.epoch, self.step, self.best["epoch"], self.bad_epochs, int(self.finished)]
            ),
            "floats": torch.tensor([self.best["val_loss"], self.elapsed], dtype=torch.float64),
        }
        partial = self.out / (STATE_FILE + ".partial")
        torch.save(state, partial)
        os.replace(partial, self.out / STATE_FILE)

    def load_state(self) -> None:
        """Resume from trainer_state.pt (read with ``weights_only=True``)."""
        state = torch.load(self.out / STATE_FILE, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.shuffle.set_state(state["shuffle"])
        self.epoch, self.step, best_epoch, self.bad_epochs, finished = state["counters"].tolist()
        best_loss, self.elapsed = state["floats"].tolist()
        self.best = {"val_loss": best_loss, "epoch": best_epoch}
        self.finished = bool(finished) and self.should_stop()
        self.truncate_metrics()
        if self.progress:
            print(f"Resuming {self.out} after epoch {self.epoch}.", flush=True)

    def truncate_metrics(self) -> None:
        """Drop metrics rows written after the saved state (a cut between the two writes)."""
        path = self.out / "metrics.csv"
        if path.exists():
            lines = path.read_text().splitlines(keepends=True)
            path.write_text("".join(lines[: self.epoch + 1]))

    def describe_init(self) -> str:
        """One log line about the initial model of a fine-tuning run."""
        init = self.config.init
        total = len(list(self.model.parameters()))
        shifts = "refitted for the data's elements" if init.fit_shifts else "kept"
        return (
            f"Fine-tuning {init.model} ({self.architecture}, "
            f"{len(self.model.type_names)} types): {len(self.frozen)} of {total} parameter "
            f"tensors frozen, energy shifts {shifts}."
        )

    @staticmethod
    def describe(row: dict) -> str:
        """One log line per epoch."""
        parts = [
            f"epoch {row['epoch']:4d}",
            f"lr {row['lr']:.2e}",
            f"train {row['train_total']:.3e}",
        ]
        for key, unit in (
            ("energy_per_atom", "meV/atom"),
            ("forces", "meV/Å"),
            ("stress", "meV/Å³"),
        ):
            if f"val_{key}_mae" in row:
                parts.append(f"val {key} MAE {row[f'val_{key}_mae']:.2f} {unit}")
        parts.append(f"{row['elapsed_s']:.0f} s")
        return " | ".join(parts)


def train(config: TrainConfig, progress: bool = True) -> dict:
    """Prepare, train (or resume) and summarise one run; returns the metrics.json summary."""
    return Trainer(config, progress=progress).fit()
