import pytest

from miniclip.course.predictions import ask, reveal


def test_reveal_compares_the_prediction_with_the_measurement(capsys):
    ask("Which way does the loss go?", ["up", "down"])
    assert reveal("down", measured="down", why="it fell from 5.5 to 0.3") is True
    assert reveal("up", measured="down", why="it fell") is False
    out = capsys.readouterr().out
    assert "Predict before" in out and "'up', 'down'" in out
    assert "You predicted 'down': right." in out and "not this time" in out


def test_reveal_reports_a_missing_or_misspelt_prediction_without_judging_it(capsys):
    ask("Which way?", ["up", "down"])
    assert reveal(None, measured="up", why="because") is False
    assert reveal("sideways", measured="up", why="because") is False
    assert capsys.readouterr().out.count("is not one of the answers") == 2


def test_reveal_refuses_a_measurement_outside_the_options():
    with pytest.raises(ValueError, match="not one of the options"):
        reveal("up", measured="left", why="", options=["up", "down"])
