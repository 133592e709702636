"""Integrations, each with its library installed (CI's slow stage installs the extras): what a Tracker sends to
TensorBoard, MLflow and W&B is read back with each tool's own reader and equals the run's records."""
import json

import numpy as np
import pytest
import torch

import lmech
from lmech.probes import Sharpness

pytestmark = pytest.mark.slow  # needs `pip install -e '.[integrations]'` (make test-slow)


def _tracked(loggers, steps=20, every=5):
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = lmech.Tracker(model, lmech.half_mse, x, y, optimizer=opt, every=every, probes=[Sharpness()],
                            loggers=loggers)
    for _ in range(steps):
        opt.zero_grad()
        lmech.half_mse(model(x), y).backward()
        opt.step()
        tracker.step()
    run = tracker.close()
    for logger in loggers:
        logger.close()
    return run


def test_tensorboard_event_files_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lmech.integrations import TensorBoardLogger

    run = _tracked([TensorBoardLogger(tmp_path)])
    events = EventAccumulator(str(tmp_path)).Reload()
    for name in ("sharpness/0", "loss/train"):
        scalars = events.Scalars(f"lmech/{name}")
        steps, values = run.series(name)
        assert [s.step for s in scalars] == list(steps) == [0, 5, 10, 15, 20]
        np.testing.assert_allclose([s.value for s in scalars], values, rtol=1e-6)


def test_mlflow_sqlite_store_reads_back(tmp_path):
    from mlflow.tracking import MlflowClient

    from lmech.integrations import MLflowLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = MLflowLogger(uri, experiment="lmech-test", run_name="tracked")
    run = _tracked([logger])
    history = MlflowClient(tracking_uri=uri).get_metric_history(logger.run_id, "lmech/sharpness/0")
    steps, values = run.series("sharpness/0")
    assert sorted(m.step for m in history) == list(steps)
    np.testing.assert_allclose([m.value for m in sorted(history, key=lambda m: m.step)], values, rtol=1e-12)
    assert MlflowClient(tracking_uri=uri).get_run(logger.run_id).info.status == "FINISHED"


def _wandb_history(path):
    """The history rows of a W&B transaction file, read independently of wandb's writer: a 7-byte header, then the
    LevelDB log layout (32 KiB blocks of chunks with a 7-byte header: crc32, length, type 1 full / 2 first / 3
    middle / 4 last) of serialized ``Record`` protobufs."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, buf, rows = path.read_bytes(), 7, 32768, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        buf, pos = buf + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def test_wandb_offline_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    from lmech.integrations import WandbLogger

    run = _tracked([WandbLogger(project="lmech-test", dir=tmp_path)])
    (path,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")  # what `wandb sync` uploads
    rows = [r for r in _wandb_history(path) if "lmech/sharpness/0" in r]
    steps, values = run.series("sharpness/0")
    assert [r["lmech/step"] for r in rows] == list(steps)
    np.testing.assert_allclose([r["lmech/sharpness/0"] for r in rows], values, rtol=1e-12)


def test_missing_library_names_the_extra(monkeypatch):
    import builtins

    from lmech.integrations import TensorBoardLogger

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.delitem(__import__("sys").modules, "tensorboard", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'lmech\[tensorboard\]'"):
        TensorBoardLogger("unused")


def test_lightning_callback_measures_at_the_global_steps(tmp_path):
    import lightning

    from lmech.integrations import LightningCallback, TensorBoardLogger

    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randn(64, 1)

    class Tiny(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

        def forward(self, inputs):
            return self.net(inputs)

        def training_step(self, batch, _):
            return lmech.half_mse(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    callback = LightningCallback(lmech.half_mse, x, y, every=5, loggers=[TensorBoardLogger(tmp_path)])
    trainer = lightning.Trainer(max_steps=12, accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    module = Tiny()
    at_init = float(lmech.sharpness(module, lmech.half_mse, x, y))
    trainer.fit(module, loader)
    steps, sharpness = callback.run.series("sharpness/0")
    assert list(steps) == [0, 5, 10] and trainer.global_step == 12  # the init and every 5th global step
    assert sharpness[0] == pytest.approx(at_init, rel=1e-3)  # step 0 is the model before training


def test_hf_trainer_callback_on_a_tiny_model_built_from_a_config(tmp_path):
    import transformers

    from lmech.integrations import HFTrainerCallback

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = transformers.BertForSequenceClassification(config)
    ids, labels = torch.randint(0, 50, (32, 8)), torch.randint(0, 2, (32,))
    data = [{"input_ids": i, "labels": label} for i, label in zip(ids, labels)]
    callback = HFTrainerCallback(lmech.cross_entropy, ids, labels, every=4)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=10, per_device_train_batch_size=8,
                                          learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no",
                                          logging_strategy="no", disable_tqdm=True)
    transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback]).train()
    steps, pre = callback.run.series("preconditioned_sharpness/0")  # AdamW: lambda_max(P^-1 H)
    assert list(steps) == [4, 8] and np.all(np.isfinite(pre))  # Adam has no preconditioner at step 0
    assert list(callback.run.series("loss/train")[0]) == [0, 4, 8]


def test_readme_integration_examples_run(tmp_path, monkeypatch):
    """The README's ```py blocks (the integrations section: not run by the default suite, whose environment lacks the
    libraries) run as written."""
    import re
    from pathlib import Path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_SILENT", "true")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```py\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 3
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, "README.md", "exec"), namespace)
    assert list(namespace["callback"].run.series("preconditioned_sharpness/0")[0]) == [10, 20, 30]
    assert (tmp_path / "mlflow.db").exists() and list((tmp_path / "runs" / "lmech").glob("events.out.tfevents.*"))
