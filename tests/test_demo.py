import json

import pytest

from miniclip.course.demo import demo


def test_demo_draws_a_zero_shot_curve_and_keeps_an_earlier_demo(tmp_path):
    out = tmp_path / "demo"
    metrics = demo(out, steps=30, num_images=1500, eval_every=10, batch_size=64)
    assert {"history.png", "similarity.png", "confusion.png", "metrics.json", "model.safetensors"} <= \
        {p.name for p in out.iterdir()}
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)
    curve = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    points = [r["step"] for r in curve if "val_zeroshot_top1" in r]
    assert points == [10, 20, 30]  # a curve, not one point at the end
    with pytest.raises(FileExistsError, match="--overwrite") as refused:
        demo(out, steps=30, num_images=1500)
    assert "--resume" not in str(refused.value)  # a flag `miniclip demo` does not have
