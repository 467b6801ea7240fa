"""Claims are code: a lesson's sentence is checked where it is made."""
import json

import pytest

from miniclip.course.claims import ClaimFailed, claim, main, summary


def test_a_true_claim_prints_a_tick(capsys):
    assert claim(2 > 1, "two beats one", lesson="laptop") is True
    assert capsys.readouterr().out.startswith("✓ two beats one")


def test_a_false_claim_fails_the_lesson_but_not_the_smoke_test(capsys, monkeypatch):
    monkeypatch.delenv("MINICLIP_CLAIMS_LOG", raising=False)
    assert claim(False, "chance beats the model", lesson="smoke") is False  # CI's tiny numbers mean nothing
    assert "NOT TRUE HERE" in capsys.readouterr().out
    with pytest.raises(ClaimFailed, match="chance beats the model"):
        claim(False, "chance beats the model", lesson="laptop")


def test_the_lesson_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("MINICLIP_CLAIMS_LOG", raising=False)
    monkeypatch.delenv("MINICLIP_LESSON", raising=False)
    monkeypatch.setenv("MINICLIP_SMOKE", "1")
    assert claim(False, "x") is False
    monkeypatch.setenv("MINICLIP_LESSON", "laptop")
    with pytest.raises(ClaimFailed):
        claim(False, "x")


def test_make_claims_logs_every_claim_and_counts_the_failures(tmp_path, monkeypatch, capsys):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv("MINICLIP_CLAIMS_LOG", str(log))
    monkeypatch.setenv("MINICLIP_NOTEBOOK", "07_failure_modes.ipynb")
    claim(True, "hard negatives lift the relation probe", lesson="laptop")
    claim(False, "the CNN beats zero-shot", lesson="laptop")  # logged, not raised: the run goes on
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["held"] for r in rows] == [True, False] and rows[1]["notebook"] == "07_failure_modes.ipynb"
    assert summary(log) == (2, 1)
    assert "FAILED 07_failure_modes.ipynb: the CNN beats zero-shot" in capsys.readouterr().out
    assert main(["summary", str(log)]) == 1
    log.write_text(log.read_text().splitlines()[0] + "\n")
    assert main(["summary", str(log)]) == 0
    capsys.readouterr()
    assert main(["summary", str(tmp_path / "none.jsonl")]) == 1  # no claim checked is no proof
    assert "none.jsonl: no such file" in capsys.readouterr().out  # and a missing log is named, not counted as 0
