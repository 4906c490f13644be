"""Simulation configs: presets, JSON overrides, and errors that name the bad key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producers.config import (
    PRESETS,
    ConfigError,
    SimulationConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    preset,
)
from producers.population import DAY


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_survives_a_round_trip_through_json(name: str) -> None:
    config = preset(name)
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config))), SimulationConfig()) == config


def test_a_json_file_overrides_the_base_field_by_field(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "seed": 7,
                "population": {"cards": 500},
                "labels": {"legit_delay": {"median": "2d"}, "fraud_delay": {"high": None}},
                "scenarios": {"card_testing": {"probe_gap": "2m", "probes": [1, 2]}},
                "drift": [{"at": "5d", "param": "fraud_rate", "to": 0.01, "ramp": "12h"}],
            }
        )
    )
    config = load_config(path, preset("drift"))
    assert config.seed == 7
    assert config.population.cards == 500
    assert config.population.terminals == preset("drift").population.terminals
    assert config.labels.legit_delay.median == 2 * DAY
    assert config.labels.fraud_delay.high is None
    assert config.labels.fraud_delay.median == preset("drift").labels.fraud_delay.median
    assert config.scenarios.card_testing.probe_gap == 120.0
    assert config.scenarios.card_testing.probes == (1, 2)
    assert config.scenarios.account_takeover == preset("drift").scenarios.account_takeover
    assert config.days == 60.0
    (change,) = config.drift
    assert (change.at, change.param, change.to, change.ramp) == ("5d", "fraud_rate", 0.01, 43200.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sede": 1}, r"config: unknown key\(s\) sede"),
        ({"population": {"cards": "many"}}, r"config\.population\.cards: expected int, got 'many'"),
        ({"fraud_rate": True}, r"config\.fraud_rate: expected float"),
        ({"fraud_rate": 1.5}, r"config: fraud_rate must be"),
        (
            {"labels": {"fraud_delay": {"median": "soon"}}},
            r"config\.labels\.fraud_delay\.median: not a duration",
        ),
        ({"population": {"median_amount": [1, 2, 3]}}, r"population\.median_amount: expected 2 values"),
        ({"drift": [{"at": "1d", "param": "nope", "to": 1}]}, r"unknown parameter 'nope'"),
        ({"drift": [{"at": "1d", "to": 1}]}, r"config\.drift\[0\]: .*param"),
        ({"days": None}, r"set days, max_transactions or both"),
        (
            {"population": {"large_share": 0.8, "small_share": 0.5}},
            r"large_share and small_share must add up to at most 1",
        ),
        (
            {"scenarios": {"compromised_terminal": {"regulars_share": 1.5}}},
            r"regulars_share must be between 0 and 1, got 1\.5",
        ),
        ({"scenarios": {"card_testing": {"cashout_factor": [5, 1]}}}, r"cashout_factor must be a range"),
        ({"scenarios": {"high_amount": {"amount": [300, 2000]}}}, r"high_amount: unknown key\(s\) amount"),
    ],
)
def test_a_bad_config_is_rejected_with_the_path_of_the_bad_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_an_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="default, drift, gradual"):
        preset("chaos")


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match=r"bad\.json"):
        load_config(tmp_path / "bad.json")
