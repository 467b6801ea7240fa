"""The rehearsal (MINICLIP_LESSON=rehearsal): the GPU lesson's cells on local stand-ins, at smoke sizes; where
remote data comes from (miniclip.course.main_run); the committed student notebooks."""
import json
from pathlib import Path

import numpy as np
import pytest

from miniclip.course import main_run as mr
from miniclip.course.lesson import on_shapes, pick_lesson, start_lesson
from miniclip.course.standins import build_standins, load_cifar10_standin
from miniclip.course.student import STUDENT_FOLDER, build
from miniclip.data.coco import HF_DEFAULT

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No lesson variables from the caller: runs go to tmp_path/runs."""
    for name in ("MINICLIP_LESSON", "MINICLIP_SMOKE", "MINICLIP_STANDINS", "MINICLIP_SCALE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINICLIP_RUNS", str(tmp_path / "runs"))
    return monkeypatch


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> Path:
    return build_standins(tmp_path_factory.mktemp("standins") / "out", images=20, seed=0)


def _first_code_cell(path: Path) -> str:
    return "".join(next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_notebook_says_rehearsal_first(env, path, capsys):
    env.setenv("MINICLIP_LESSON", "rehearsal")
    env.setenv("MINICLIP_SMOKE", "1")  # as `make test` sets it: the lesson variable wins
    namespace = {}
    exec(compile(_first_code_cell(path), str(path), "exec"), namespace)  # the notebook's first code cell
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("miniclip lesson: rehearsal ") and "stand-ins" in first and "mean nothing" in first
    assert namespace["lesson"].name == "rehearsal"


def test_the_rehearsal_is_the_gpu_lesson_at_smoke_sizes(env, tmp_path):
    env.setenv("MINICLIP_LESSON", "rehearsal")
    rehearsal, gpu, smoke = pick_lesson(), pick_lesson("gpu"), pick_lesson("smoke")
    assert (rehearsal.data, rehearsal.preset) == (gpu.data, gpu.preset) == ("coco", "coco-small")
    assert rehearsal.smoke and rehearsal.steps <= smoke.steps and rehearsal.eval_images <= smoke.eval_images
    assert rehearsal.standins == tmp_path / "runs" / "rehearsal" / "standins" and gpu.standins is None
    cfg = mr.main_run_config(rehearsal)
    assert cfg.preset == "coco-small" and cfg.batch_size == rehearsal.batch_size < mr.main_run_config(gpu).batch_size
    assert cfg.data == str(mr.coco_cache_dir(rehearsal, "train"))
    assert on_shapes(rehearsal) == smoke and on_shapes(gpu) == pick_lesson("laptop") and on_shapes(smoke) == smoke


def test_gpu_lesson_on_stand_ins_keeps_its_sizes_in_a_folder_of_its_own(env, tmp_path, capsys):
    env.setenv("MINICLIP_STANDINS", str(tmp_path / "mine"))
    gpu = start_lesson(name="gpu")
    line = capsys.readouterr().out
    assert gpu.standins == tmp_path / "mine" and gpu.runs_dir == tmp_path / "runs" / "gpu-standins"
    assert (gpu.steps, gpu.num_images, gpu.batch_size) == (5_000, 40_000, None)  # the GPU lesson's sizes
    assert line.startswith("miniclip lesson: gpu ") and "stand-ins" in line and "mean nothing" not in line
    assert ("would take hours" in line) == (gpu.device == "cpu")  # the GPU lesson on a CPU is warned about
    assert pick_lesson("rehearsal").standins == tmp_path / "mine"  # the rehearsal reads the same folder


def test_without_stand_ins_the_sources_are_the_real_ones(env):
    gpu = pick_lesson("gpu")
    assert mr.coco_source(gpu, "val") == {"source": "hf"}  # open_source's default: HF_DEFAULT on the Hub
    assert mr.clip_checkpoint(gpu) == "openai/clip-vit-base-patch32"
    assert "COCO_captions" in HF_DEFAULT
    with pytest.raises(ValueError, match="MINICLIP_STANDINS"):
        mr.standins_dir(gpu)


@pytest.mark.filterwarnings("ignore:hf source")  # "read 2 images for split 'val', but the Karpathy split has 5,000"
def test_with_stand_ins_every_source_reads_them(env, standins, tmp_path):
    env.setenv("MINICLIP_STANDINS", str(standins))
    lesson = pick_lesson("rehearsal")
    for split, hub in (("train", "train"), ("val", "validation"), ("test", "test")):
        source = mr.coco_source(lesson, split)
        assert source == {"source": "hf", "hf_dataset": str(standins / "hub" / f"COCO_captions_{hub}")}
    folder = Path(mr.clip_checkpoint(lesson))
    assert folder.parent == standins and json.loads((folder / "config.json").read_text())["model_type"] == "clip"
    images, labels, classes = mr.cifar10(lesson)
    expected = load_cifar10_standin(standins)
    assert np.array_equal(images, expected[0]) and np.array_equal(labels, expected[1]) and classes == expected[2]
    # the GPU branch's data code, unchanged: a cache of the stand-in Hub files (2 val images of 20)
    val = mr.coco_pairs(lesson, "val")
    assert val.num_images == 2 and val.images.shape[1:] == (64, 64, 3) and len(val.captions) == 10
    manifest = json.loads((mr.coco_cache_dir(lesson, "val") / "manifest.json").read_text())
    assert manifest["source"]["dataset"] == str(standins / "hub" / "COCO_captions_validation")
    assert mr.sample_pairs(lesson, 100, split="test").num_images == 2


def test_stand_ins_are_built_on_first_use(env, tmp_path, capsys):
    env.setattr(mr, "REHEARSAL_STANDIN_IMAGES", 20)  # the rehearsal's build, made smaller for this test
    lesson = pick_lesson("rehearsal")
    assert not lesson.standins.exists()
    assert mr.standins_dir(lesson) == lesson.standins and (lesson.standins / "manifest.json").is_file()
    assert json.loads((lesson.standins / "manifest.json").read_text())["images"] == 20
    assert "building the stand-ins" in capsys.readouterr().out
    assert mr.standins_dir(lesson) == lesson.standins and capsys.readouterr().out == ""  # found, not built again


# ---- student/: the exercise notebooks, committed -----------------------------------------------------------------


def test_student_folder_is_up_to_date(tmp_path):
    written = build(ROOT / "notebooks", tmp_path / STUDENT_FOLDER)
    committed = sorted((ROOT / STUDENT_FOLDER).glob("*.ipynb"))
    assert [p.name for p in committed] == [p.name for p in written], "run `make student` and commit student/"
    for new, old in zip(written, committed):
        assert json.loads(new.read_text()) == json.loads(old.read_text()), (
            f"{old} is out of date with notebooks/{old.name}: run `make student` and commit student/")


def test_student_badges_open_the_student_notebooks():
    paths = sorted((ROOT / STUDENT_FOLDER).glob("*.ipynb"))
    assert len(paths) == len(NOTEBOOKS) > 0
    for path in paths:
        text = "".join(json.loads(path.read_text())["cells"][0]["source"])
        assert f"/blob/main/{STUDENT_FOLDER}/{path.name})" in text and "/notebooks/" not in text, path
