"""Training: a few steps on a tiny config, checkpoint + exact resume, export."""



from conftest import train_args
from licodec import train
from licodec.weights import load_weights


def _args(tmp_path, out, steps, resume=False, stop_at=None):
    return train_args(
        "-m", "mbt2018-mean", "--config", '{"N": 8, "M": 12}', "--data", tmp_path / "imgs",
        "--val", tmp_path / "imgs", "--out", tmp_path / out, "--steps", steps,
        "--batch-size", "2", "--patch", "64", "--val-every", "2", "--checkpoint-minutes", "0",
        *(["--resume"] if resume else []), *(["--stop-at", stop_at] if stop_at else []),
    )


def _losses(path):
    return [line.split(",")[3] for line in path.read_text().splitlines()[1:]]


def test_resume_continues_exactly(tmp_path, train_images):
    full = train.run(_args(tmp_path, "a", 4))
    train.run(_args(tmp_path, "b", 4, stop_at=2))
    resumed = train.run(_args(tmp_path, "b", 4, resume=True))
    assert _losses(tmp_path / "a" / "log.csv") == _losses(tmp_path / "b" / "log.csv")
    ma, _ = load_weights(full)
    mb, info = load_weights(resumed)
    assert info["extra"]["steps"] == 4
    for a, b in zip(ma.state_dict().values(), mb.state_dict().values()):
        assert (a == b).all()


def test_random_mask_and_warm_start_from_another_model(tmp_path, train_images):
    from conftest import tiny_model
    from licodec.weights import save_weights

    donor = tmp_path / "mbt.safetensors"
    save_weights(tiny_model("mbt2018-mean", N=8, M=12), donor, quality=3)
    args = train_args(
        "-m", "lee2019-ctx", "--config", '{"N": 8, "M": 12}', "--data", train_images, "--val", "",
        "--out", tmp_path / "rm", "--steps", "2", "--batch-size", "2", "--patch", "64",
        "--random-mask", "--warm-start", donor, "--lr", "0",
    )
    model, info = load_weights(train.run(args))
    assert model.config.random_mask
    d, _ = load_weights(donor)
    assert (model.g_a[0].weight == d.g_a[0].weight).all()  # copied (lr 0 keeps it)
