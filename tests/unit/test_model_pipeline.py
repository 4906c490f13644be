"""Any River classifier pipeline from the engine config: built, validated at start, snapshotted, explained."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from river import compose, forest, imblearn

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.engine.model import FraudModel, ModelConfig
from detector.engine.records import Label, Transaction
from detector.service.engine_setup import engine_config_for
from detector.service.settings import ServiceSettings
from tests.unit.test_engine import feed, stream

AMF = [["preprocessing.StandardScaler", {}], ["forest.AMFClassifier", {"n_estimators": 3}]]


def test_a_configured_pipeline_is_built_and_restored_from_a_snapshot_exactly() -> None:
    config = EngineConfig.from_dict({"model": {"pipeline": AMF}})
    items = stream(600, seed=3)
    engine = DetectionEngine(config)
    feed(engine, items[:800])
    classifier = engine.model.classifier
    assert isinstance(classifier, compose.Pipeline)
    steps = classifier.steps
    assert [type(step).__name__ for step in steps.values()] == ["StandardScaler", "AMFClassifier"]
    assert steps["AMFClassifier"].n_estimators == 3 and engine.model.labels_learned > 100
    assert config.model.kind == "pipeline"

    restored = DetectionEngine.restore(engine.snapshot())
    assert feed(restored, items[800:]) == feed(engine, items[800:])


def test_a_pipeline_without_weights_explains_a_flagged_score_by_occlusion() -> None:
    engine = DetectionEngine(EngineConfig.from_dict({"model": {"pipeline": AMF}}))
    feed(engine, stream(1000, seed=4, fraud_rate=0.2))
    decision = engine.process_transaction(Transaction("big", 1_800_000_000.0, "c1", "m1", 900.0))
    assert decision.score >= engine.config.policy.review_threshold
    assert any(code.startswith("feature:") for code in decision.reason_codes), decision.reason_codes


def test_the_presets_are_pipelines_of_the_named_models() -> None:
    built = {
        kind: FraudModel(ModelConfig(kind=kind)).classifier
        for kind in (
            "logistic_regression",
            "hoeffding_tree",
            "hoeffding_adaptive_tree",
            "adaptive_random_forest",
        )
    }
    assert str(built["logistic_regression"]) == "StandardScaler | LogisticRegression"
    assert type(built["hoeffding_tree"]).__name__ == "HoeffdingTreeClassifier"
    assert type(built["hoeffding_adaptive_tree"]).__name__ == "HoeffdingAdaptiveTreeClassifier"
    forest_model = built["adaptive_random_forest"]
    assert isinstance(forest_model, forest.ARFClassifier) and forest_model.max_share_to_split == 1.0


def test_fraud_model_still_chooses_a_preset() -> None:
    settings = ServiceSettings.from_env({"FRAUD_MODEL": "hoeffding_adaptive_tree"})
    assert engine_config_for(settings).model.kind == "hoeffding_adaptive_tree"


def test_nested_steps_build_ensembles_of_pipelines_and_boolean_class_keys() -> None:
    bagged = (["ensemble.BaggingClassifier", {"model": [*AMF[:1], ["linear_model.LogisticRegression", {}]]}],)
    assert str(FraudModel(ModelConfig(pipeline=bagged)).classifier) == (
        "BaggingClassifier(StandardScaler | LogisticRegression)"
    )
    sampler: list[Any] = [
        "imblearn.RandomUnderSampler",
        {"classifier": ["linear_model.LogisticRegression", {}]},
    ]
    sampler[1]["desired_dist"] = {"true": 0.3, "false": 0.7}
    undersampled = FraudModel(ModelConfig(pipeline=(sampler,))).classifier
    assert isinstance(undersampled, imblearn.RandomUnderSampler)
    assert undersampled.desired_dist == {True: 0.3, False: 0.7}


@pytest.mark.parametrize(
    ("pipeline", "problem"),
    [
        ([["forest.AMFClassifer", {}]], "[0]: unknown River class 'forest.AMFClassifer'"),
        ([["forest.AMFClassifier", {"trees": 3}]], "[0] forest.AMFClassifier: unknown parameter 'trees'"),
        ([["forest.AMFClassifier", {"n_estimators": "ten"}]], "n_estimators must be int, got 'ten'"),
        ([["os.system", {}]], "[0]: unknown River module 'os'"),
        ([["compose.__builtins__", {}]], "is not a River class name"),
        ([["forest.AMFClassifier", {}], ["preprocessing.StandardScaler", {}]], "not a transformer"),
        ([["preprocessing.StandardScaler", {}]], "the last step must be a classifier"),
        ([["forest.AMFClassifier"]], 'expected ["module.Class", {parameters}]'),
        ([], "expected a list of steps"),
    ],
)
def test_a_bad_pipeline_is_refused_when_the_config_is_built(pipeline: list, problem: str) -> None:
    with pytest.raises(ValueError) as error:
        EngineConfig.from_dict({"model": {"pipeline": pipeline}})
    headline, *lines = str(error.value).splitlines()
    assert headline == "invalid engine config:" and len(lines) == 1
    assert lines[0].strip().startswith("model.pipeline: ") and problem in lines[0], lines


def test_a_preset_and_a_pipeline_together_are_refused() -> None:
    with pytest.raises(ValueError, match="model: give either kind"):
        EngineConfig.from_dict({"model": {"kind": "logistic_regression", "pipeline": AMF}})


def test_the_service_refuses_a_bad_pipeline_at_start_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "engine.json"
    path.write_bytes(orjson.dumps({"model": {"pipeline": [["forest.AMFClassifier", {"trees": 3}]]}}))
    run = subprocess.run(
        [sys.executable, "-m", "detector.cli", "run"],
        env={"FRAUD_ENGINE_CONFIG": str(path), "FRAUD_METRICS_PORT": "0", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith(f"fraud-detector: FRAUD_ENGINE_CONFIG '{path}'")
    assert "unknown parameter 'trees'" in run.stderr


def test_the_backtest_refuses_a_bad_pipeline_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from detector.backtest.cli import main

    config = tmp_path / "amf.json"
    config.write_bytes(orjson.dumps({"model": {"pipeline": [["forest.NoSuchForest", {}]]}}))
    history = tmp_path / "tx.jsonl"
    history.write_text("")
    assert main([str(history), "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1 and "unknown River class 'forest.NoSuchForest'" in error


def test_a_label_of_a_pipeline_model_is_learned() -> None:
    engine = DetectionEngine(EngineConfig.from_dict({"model": {"pipeline": AMF}}))
    engine.process_transaction(Transaction("t0", 1_700_000_000.0, "c", "m", 10.0))
    engine.process_label(Label("t0", "c", True, 1_700_000_010.0))
    engine.flush()
    assert engine.model.labels_learned == 1
