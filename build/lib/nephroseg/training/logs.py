"""Training logs: a CSV anyone can open (rewritten atomically each epoch) and TensorBoard curves."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from nephroseg.io import atomic_write_text

LOG_COLUMNS = (
    "epoch",
    "step",
    "train_loss",
    "val_kidney_tumor_dice",
    "val_tumor_dice",
    "val_composite_dice",
    "lr",
    "seconds",
)


def read_log(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class RunLog:
    """Rows keyed by epoch; on resume the rows already written are kept and later ones replaced."""

    def __init__(self, run_dir: Path, resume_epoch: int, tensorboard: bool = True) -> None:
        self.path = run_dir / "log.csv"
        self.rows = [r for r in read_log(self.path) if int(r["epoch"]) < resume_epoch]
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=None)

    def add(self, row: dict[str, float | int | None]) -> None:
        self.rows.append({k: "" if row.get(k) is None else str(row[k]) for k in LOG_COLUMNS})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())
        if self.writer is not None:
            step = int(row["step"])  # type: ignore[arg-type]
            for key in LOG_COLUMNS[2:7]:
                if row.get(key) is not None:
                    self.writer.add_scalar(key.replace("_", "/", 1), float(row[key]), step)  # type: ignore[arg-type]
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
