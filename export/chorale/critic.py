"""A learned style reward for Sequence Tutor: a Bach-or-not critic.

A logistic regression on the style features of export/chorale/analysis.py (the same
textbook features the style evaluation reads, and Bach's chord progressions' likelihood),
fitted on the *training* chorales only: Bach's settings against the prior's own live
takes of the same melodies. Its log-odds that a take is Bach's is a reward the tuning can
chase beside the rules. It is not the reporting discriminator: that one is refitted on
the held-out test melodies, leave-one-melody-out, and nothing is trained against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kantor.engine.chorale.keys import key_of_setting
from kantor.export.chorale.analysis import ChordBigram
from kantor.export.chorale.corpus import Chorale
from kantor.export.chorale.style import Setting, describe, feature_matrix


@dataclass
class StyleCritic:
    """``score(raw, chorale)``: log-odds that a setting of ``chorale``'s melody is Bach's."""

    names: list[str]
    model: object  # an sklearn pipeline: imputer, scaler, logistic regression
    bigram: ChordBigram

    @classmethod
    def fit(cls, chorales: list[Chorale], takes: dict[str, np.ndarray], bigram: ChordBigram,
            strength: float = 0.1) -> StyleCritic:
        """Bach's settings of ``chorales`` against ``takes`` (chorale name -> the prior's
        raw setting); ``strength`` is the inverse of the L2 penalty (small: a smooth
        reward that does not hang on one feature)."""
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        rows = []
        for chorale in chorales:
            key = key_of_setting(chorale.raw)
            rows.append(describe(Setting(chorale.name, "bach", 0, chorale.raw), chorale, key,
                                 bigram))
            rows.append(describe(Setting(chorale.name, "prior", 0, takes[chorale.name]),
                                 chorale, key, bigram))
        names = sorted(rows[0].features)
        x = feature_matrix(rows, names)
        y = np.array([r.source == "bach" for r in rows], dtype=int)
        model = make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True),
                              StandardScaler(),
                              LogisticRegression(C=strength, max_iter=5000))
        model.fit(x, y)
        return cls(names, model, bigram)

    def score(self, raw: np.ndarray, chorale: Chorale) -> float:
        """Log-odds (nats) that ``raw`` is Bach's setting of ``chorale``'s melody."""
        row = describe(Setting(chorale.name, "take", 0, raw), chorale,
                       key_of_setting(chorale.raw), self.bigram)
        return float(self.model.decision_function(feature_matrix([row], self.names))[0])
