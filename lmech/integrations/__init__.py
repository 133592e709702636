"""lmech inside the tools people already use: metric loggers for TensorBoard, MLflow and W&B (:mod:`.loggers`), and
callbacks that attach lmech's probes to PyTorch Lightning and the Hugging Face Trainer (:mod:`.callbacks`). Each
library is an optional extra, imported only when its adapter is built."""
from .callbacks import HFTrainerCallback, LightningCallback
from .loggers import MetricLogger, MLflowLogger, TensorBoardLogger, WandbLogger

__all__ = ["MetricLogger", "TensorBoardLogger", "MLflowLogger", "WandbLogger", "LightningCallback",
           "HFTrainerCallback"]
