"""The metric logs of a run (taskcodecs.training.run_logs): log.csv rows and TensorBoard (lr,
validation images, hparams); and the tqdm-routed log."""

import logging

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from infra import cli
from taskcodecs.training.outputs import open_logs
from taskcodecs.training.rate_control import RateController
from taskcodecs.training.run import resolve_config, train
from taskcodecs.training.run_logs import RunLogs


def test_a_row_goes_to_log_csv_and_to_one_scalar_per_term(tmp_path):
    logs = RunLogs(*open_logs(tmp_path, None))
    logs.row(3, 0, "train", 1e-4, 1.25, {"loss": 0.5, "bpp_base": 0.25}, None)
    logs.row(4, 1, "val", 1e-4, 2.0, {"loss": 0.75, "bpp_base": 0.5}, RateController(0.1, 0.01))
    logs.tb.close()
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0] == "step,epoch,phase,lr,elapsed_s,bpp_base,loss"  # header from the first row
    assert lines[1:] == ["3,0,train,0.0001,1.25,0.25,0.5", "4,1,val,0.0001,2,0.5,0.75"]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/bpp_base", "train/lr", "val/loss"} <= set(events.Tags()["scalars"])
    assert "val/lr" not in events.Tags()["scalars"]


def test_tensorboard_has_lr_reconstructions_and_hparams(tmp_path):
    run = train(resolve_config("tiny-depth-base-proposed", {
        "synthetic.train": 2, "synthetic.val": 2, "log_every": 1, "num_workers": 0,
        "max_steps": 2, "val_every": 1, "synthetic_cache": str(tmp_path / "cache"),
        "out": str(tmp_path / "run")}))
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert "train/lr" in tags["scalars"] and "val/loss" in tags["scalars"]
    lrs = events.Scalars("train/lr")
    assert [e.step for e in lrs] == [1, 2] and all(e.value > 0 for e in lrs)
    assert {"val/images/0", "val/images/1"} <= set(tags["images"])
    image = events.Images("val/images/0")[-1]
    assert image.width == 3 * 128 and image.height == 64  # image | x_hat | disparity
    assert events.PluginTagToContent("hparams")  # experiment, session start and end
    assert "hparam/best_objective" in tags["scalars"]


def test_log_records_go_through_tqdm_write(monkeypatch):
    import tqdm

    written = []
    monkeypatch.setattr(tqdm.tqdm, "write", staticmethod(lambda text, file=None: written.append(text)))
    handler = cli.TqdmLoggingHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.tqdm.route")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("hello %d", 3)
    finally:
        logger.removeHandler(handler)
    assert written == ["WARNING hello 3"]
