"""Benchmark: candidate models and pipelines through the engine on one simulated stream, side by side.

Each candidate is an engine config (a preset or a River pipeline spec, as ``FRAUD_ENGINE_CONFIG``
takes it) run through ``DetectionEngine`` on exactly the same events, with drift handling as
configured by default. Reported per candidate: prequential ROC AUC, average precision, card
precision@100 per day and its ceiling (a perfect ranking), events/s and its ratio to the default
model's, measured in the same run (the machine's load moves absolute figures, hardly the ratios).

Then, per fraud scenario, how separable its frauds are from legitimate transactions by the single
most telling feature (ROC AUC of that feature alone, either direction) against the default model's
AUC on that scenario: a scenario that one trivial feature separates would reward the wrong models.

    python bench/model_bench.py --days 90 --cards 1000 --terminals 150
    python bench/model_bench.py --days 90 --cards 1000 --models logistic_regression amf
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_bench import DAY, quality, run_engine
from report import print_table, write_json

from detector.engine.config import EngineConfig
from detector.engine.engine import DetectionEngine
from detector.evaluation import roc_auc
from producers.config import preset
from producers.simulator import Event, SimulatedTransaction, simulate

DEFAULT = "logistic_regression"
_SCALED_LINEAR = [["preprocessing.StandardScaler", {}], ["linear_model.LogisticRegression", {}]]
_WEIGHTED_LOSS = {
    "loss": ["optim.losses.Log", {"weight_pos": 10.0}],
    "optimizer": ["optim.SGD", {"lr": 0.001}],
}
_WEIGHTED_LINEAR = [["linear_model.LogisticRegression", _WEIGHTED_LOSS]]
_MORE_FEATURES = {"card_terminal_recency": True, "terminal_amount_ratio": True}

# name -> engine config; the first is the default, the reference for the speed ratio.
CANDIDATES: dict[str, dict] = {
    DEFAULT: {"model": {"kind": "logistic_regression"}},
    "lr_unweighted": {"model": {"pipeline": _SCALED_LINEAR}},
    "lr_undersampled": {
        "model": {
            "pipeline": [
                ["preprocessing.StandardScaler", {}],
                [
                    "imblearn.RandomUnderSampler",
                    {
                        "classifier": ["linear_model.LogisticRegression", {}],
                        "desired_dist": {"true": 0.1, "false": 0.9},
                    },
                ],
            ]
        }
    },
    "lr_interactions": {
        "model": {
            "pipeline": [
                ["preprocessing.StandardScaler", {}],
                ["feature_extraction.PolynomialExtender", {"degree": 2, "interaction_only": True}],
                *_WEIGHTED_LINEAR,
            ]
        }
    },
    "lr_bagging": {
        "model": {
            "pipeline": [
                ["preprocessing.StandardScaler", {}],
                ["ensemble.BaggingClassifier", {"model": _WEIGHTED_LINEAR[0], "n_models": 5}],
            ]
        }
    },
    "hat_before_fix": {
        "model": {
            "pipeline": [
                [
                    "tree.HoeffdingAdaptiveTreeClassifier",
                    {"grace_period": 200, "max_share_to_split": 1.0, "leaf_prediction": "mc"},
                ]
            ]
        }
    },
    "hoeffding_tree": {"model": {"kind": "hoeffding_tree"}},
    "hoeffding_adaptive_tree": {"model": {"kind": "hoeffding_adaptive_tree"}},
    "amf": {
        "model": {
            "pipeline": [["preprocessing.StandardScaler", {}], ["forest.AMFClassifier", {"n_estimators": 3}]]
        }
    },
    "arf_before_fix": {
        "model": {
            "pipeline": [
                ["forest.ARFClassifier", {"n_models": 10, "grace_period": 200, "max_share_to_split": 1.0}]
            ]
        }
    },
    "adaptive_random_forest": {"model": {"kind": "adaptive_random_forest"}},
    # The default model on other features (docs/models.md): the former default without the 10-minute
    # card window, and the opt-in features on top of today's.
    "lr_without_card_10m": {"features": {"card_windows": ["1h", "1d", "7d", "30d"]}},
    "lr_card_terminal_recency": {"features": {"card_terminal_recency": True}},
    "lr_terminal_amount": {"features": {"terminal_amount_ratio": True}},
    "lr_more_features": {"features": _MORE_FEATURES},
    "hoeffding_tree_more_features": {"model": {"kind": "hoeffding_tree"}, "features": _MORE_FEATURES},
}


def simulated(days: float, cards: int, terminals: int, seed: int) -> list[Event]:
    base = preset("default")
    population = replace(base.population, cards=cards, terminals=terminals)
    return list(simulate(replace(base, seed=seed, days=days, population=population)))


def run(config: EngineConfig, stream: list[Event]) -> tuple[float, np.ndarray, np.ndarray, tuple[str, ...]]:
    """(CPU seconds, scores, feature matrix, feature names) of one engine over the stream."""
    engine = DetectionEngine(config)
    outcome = run_engine(engine, stream)
    rows = [list(features.values()) for features in outcome.features.values()]
    return outcome.seconds, np.array(outcome.scores), np.array(rows), engine.extractor.names


def separability(
    transactions: list[SimulatedTransaction], features: np.ndarray, names: tuple[str, ...], scores: np.ndarray
) -> list[dict[str, object]]:
    """Per scenario: the best single feature's AUC (either direction) and the default model's AUC."""
    scenario = np.array([item.scenario or "" for item in transactions])
    legit = scenario == ""
    rows = []
    for name in sorted(set(scenario) - {""}):
        chosen = legit | (scenario == name)
        truth = (scenario[chosen] == name).astype(int)
        aucs = [roc_auc(truth, features[chosen, column]) for column in range(len(names))]
        best = int(np.argmax([max(auc, 1.0 - auc) for auc in aucs]))
        rows.append(
            {
                "scenario": name,
                "frauds": int(truth.sum()),
                "best_feature": names[best],
                "its_auc": max(aucs[best], 1.0 - aucs[best]),
                "model_auc": roc_auc(truth, scores[chosen]),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=90.0)
    parser.add_argument("--cards", type=int, default=1_000)
    parser.add_argument("--terminals", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--burn-in-days", type=float, default=7.0)
    parser.add_argument("--models", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--json", default="out/bench/models.json")
    args = parser.parse_args(argv)

    stream = simulated(args.days, args.cards, args.terminals, args.seed)
    transactions = [item for item in stream if isinstance(item, SimulatedTransaction)]
    print(
        f"stream: {len(transactions):,} transactions ({sum(t.is_fraud for t in transactions):,} fraud),"
        f" {len(stream) - len(transactions):,} labels, {args.days:g} days, {args.cards:,} cards"
    )
    kept = np.array(
        [t.event_time >= transactions[0].event_time + args.burn_in_days * DAY for t in transactions]
    )
    names = [DEFAULT, *(name for name in args.models if name != DEFAULT)]  # the reference runs first
    rows, reference_rate, scenarios = [], 0.0, []
    for name in names:
        seconds, scores, features, feature_names = run(EngineConfig.from_dict(CANDIDATES[name]), stream)
        rate = len(stream) / seconds
        reference_rate = reference_rate or rate
        row = {
            "model": name + (" (default)" if name == DEFAULT else ""),
            **quality(stream, list(scores), args.burn_in_days),
            "events/s": rate,
            "speed_vs_default": rate / reference_rate,
        }
        rows.append(row)
        print_table(f"model {name}", [row])
        if name == DEFAULT:
            chosen = [t for t, keep in zip(transactions, kept, strict=True) if keep]
            scenarios = separability(chosen, features[kept], feature_names, scores[kept])
    print_table("models on the same stream (events = transactions + labels)", rows)
    print_table("scenarios: the best single feature against the default model", scenarios)
    write_json(
        args.json, "models", rows, scenarios=scenarios, days=args.days, cards=args.cards, events=len(stream)
    )


if __name__ == "__main__":
    main()
