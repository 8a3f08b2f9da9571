"""Decide whether the documents answer a question ("not found" must be honest).

Three kinds of question are declined before any scoring, by rule:

* personal records ("王桂兰家的低保批下来没有", an ID-card or phone number): the plans hold
  no personal data; the asker is pointed to 进度 or the village cadre instead;
* places the corpus does not cover ("河南省的…"), see :mod:`knowledge.regions`;
* questions with no content word at all.

Everything else gets a probability from a logistic model over retrieval features
(:func:`features`): how much of the question's vocabulary the best passages cover, how strong
the lexical and dense matches are, and whether a question that asks for an amount, a date, a
rate or a frequency finds one in the best passage. The model's weights and threshold are fitted
by ``python -m knowledge calibrate`` on the project's own labelled questions
(``data/calibration.jsonl``) and stored in ``data/answerability.json``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = [
    "Decision",
    "Calibration",
    "features",
    "personal_reason",
    "FEATURE_NAMES",
    "answer_types",
    "load_calibrations",
    "save_calibrations",
]

FEATURE_NAMES = (
    "coverage_top1",
    "coverage_top3",
    "lexical_strength",
    "dense_top1",
    "dense_margin",
    "type_missing",
    "specific_missing",
)

_ID_NUMBER = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)|(?<!\d)1[3-9]\d{9}(?!\d)")
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
_NAMED_PERSON = re.compile(
    rf"(?:^|[，,。？?\s])([{_SURNAMES}][\u4e00-\u9fff]{{1,2}})(?:家|的|同志|老人|大爷|大娘|婶|叔)"
)
_STATUS = re.compile(
    r"(批|审|办|发|到账|下来|通过|落实|给|到)(下来|好|完)?(了)?(没有|没|吗|没得|了没)[？?]?$|进度|办到哪|帮扶责任人是谁|联系人是谁"
)

# "我家的低保批下来没有", "俺家的补助到账了吗": the state of one's own case, not a policy.
_OWN_CASE = re.compile(
    r"(?:我家|俺家|我的|他家|她家)[^，。？?]{0,12}"
    r"(?:(?:批|审|办|发)(?:下来|好|完)?了?(?:没有|没)|(?:批|审|办|发)(?:下来|好|完)了吗|到账了?(?:吗|没有|没))"
)

# What a question asks for, and what a passage must contain to answer it.
_WANTS = {
    "money": (
        re.compile(
            r"多少钱|补多少|给多少|贴多少|多少元|多少块|金额|标准是多少|能领多少|能拿多少|补助多少|发多少"
        ),
        re.compile(r"\d[\d.]*\s*(?:万|千|百)?元|元/|万元"),
    ),
    "date": (
        re.compile(r"哪一天|哪天|几号|几月份|什么时候|何时|啥时候|哪一年|哪年"),
        re.compile(r"\d{4}\s*年|\d+\s*月|年底|月底|日前|日内"),
    ),
    "rate": (re.compile(r"利率|利息是多少|年息|费率"), re.compile(r"\d[\d.]*\s*(?:%|厘|个百分点)")),
    "duration": (
        re.compile(r"(?:能|可以|最长|最多)(?:贷|借|用|领|享受)?几年|多少年|多长时间|期限"),
        re.compile(r"\d+\s*(?:年|个月|天|日)|期限|年限"),
    ),
}


@dataclass
class Decision:
    """The answerability verdict for one question."""

    answerable: bool
    probability: float
    reason: str  # "ok", "personal", "unknown_place", "no_content", "low_confidence"


def personal_reason(question: str) -> str | None:
    """Why a question asks about a personal record rather than a policy (None if it does not)."""
    if _ID_NUMBER.search(question):
        return "id_or_phone"
    if _NAMED_PERSON.search(question) and _STATUS.search(question):
        return "named_person_status"
    if _OWN_CASE.search(question):
        return "own_case_status"
    return None


def answer_types(question: str) -> list[str]:
    """The kinds of fact the question asks for (money, date, rate, duration)."""
    return [name for name, (ask, _) in _WANTS.items() if ask.search(question)]


def type_satisfied(kind: str, text: str) -> bool:
    return bool(_WANTS[kind][1].search(text))


def features(
    *,
    own_terms: list[str],
    idf: dict[str, float],
    top_tokens: list[set[str]],
    top_texts: list[str],
    lexical_strength: float,
    dense_scores: list[float],
    question: str,
    stands_for: dict[str, set[str]] | None = None,
) -> list[float]:
    """Numeric features of one question's retrieval (see :data:`FEATURE_NAMES`)."""
    # A word the corpus never uses is as telling as the rarest word it does use.
    unseen = max(idf.values(), default=1.0)
    weights = {t: idf.get(t, unseen) for t in set(own_terms)}
    total = sum(weights.values()) or 1.0

    alt = stands_for or {}

    def covered(t: str, tokens: set[str]) -> bool:
        # A colloquial word counts as covered when the policy words it stands for are there.
        return t in tokens or bool(alt.get(t, set()) & tokens)

    def coverage(tokens: set[str]) -> float:
        return sum(w for t, w in weights.items() if covered(t, tokens)) / total

    cov1 = coverage(top_tokens[0]) if top_tokens else 0.0
    cov3 = coverage(set().union(*top_tokens[:3])) if top_tokens else 0.0
    d1 = dense_scores[0] if dense_scores else 0.0
    d_margin = d1 - (sorted(dense_scores)[len(dense_scores) // 2] if dense_scores else 0.0)
    kinds = answer_types(question)
    # The kind of fact asked for must appear in one of the best passages.
    missing = (
        1.0 if kinds and not any(all(type_satisfied(k, t) for k in kinds) for t in top_texts[:3]) else 0.0
    )
    # The rarest content word of the question that no top passage contains (e.g. 利率, 疫苗).
    rare_missing = 0.0
    union = set().union(*top_tokens[:3]) if top_tokens else set()
    for t, w in weights.items():
        if not covered(t, union) and len(t) >= 2:
            rare_missing = max(rare_missing, w)
    return [cov1, cov3, lexical_strength, d1, d_margin, missing, rare_missing / 10.0]


@dataclass
class Calibration:
    """Logistic model over :func:`features` plus a decision threshold."""

    weights: list[float]
    bias: float
    threshold: float
    mean: list[float]
    scale: list[float]
    model: str = ""
    fitted_on: str = ""

    def probability(self, x: list[float]) -> float:
        z = self.bias
        for w, v, m, s in zip(self.weights, x, self.mean, self.scale, strict=True):
            z += w * (v - m) / (s or 1.0)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def to_json(self) -> dict[str, object]:
        return {
            "features": list(FEATURE_NAMES),
            "weights": self.weights,
            "bias": self.bias,
            "threshold": self.threshold,
            "mean": self.mean,
            "scale": self.scale,
            "model": self.model,
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Calibration:
        if list(data.get("features", [])) != list(FEATURE_NAMES):  # type: ignore[call-overload]
            raise ValueError("calibration was fitted on other features")
        return cls(
            weights=[float(w) for w in data["weights"]],  # type: ignore[union-attr]
            bias=float(data["bias"]),  # type: ignore[arg-type]
            threshold=float(data["threshold"]),  # type: ignore[arg-type]
            mean=[float(v) for v in data["mean"]],  # type: ignore[union-attr]
            scale=[float(v) for v in data["scale"]],  # type: ignore[union-attr]
            model=str(data.get("model", "")),
            fitted_on=str(data.get("fitted_on", "")),
        )

    @classmethod
    def default(cls) -> Calibration:
        """Hand-set weights used until a calibration file exists."""
        return cls(
            weights=[2.0, 1.0, 1.5, 1.0, 1.0, -1.5, -1.0],
            bias=1.0,
            threshold=0.5,
            mean=[0.5, 0.6, 0.5, 0.85, 0.05, 0.2, 0.3],
            scale=[0.25, 0.25, 0.25, 0.03, 0.03, 0.4, 0.3],
        )


def calibration_path() -> Path:
    """Where the fitted calibrations ship: ``knowledge/data/answerability.json``."""
    return Path(str(resources.files("knowledge") / "data" / "answerability.json"))


def load_calibrations(path: Path | None = None) -> dict[str, Calibration]:
    """The fitted calibration of each ranking method ("weighted", "bm25", "dense", …).

    Missing or unreadable files give the hand-set default, so a fresh checkout still runs.
    """
    target = path or calibration_path()
    try:
        data = json.loads(Path(target).read_text("utf-8"))
        return {name: Calibration.from_json(c) for name, c in data["methods"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {"weighted": Calibration.default()}


def save_calibrations(calibrations: dict[str, Calibration], path: Path | None = None) -> Path:
    target = path or calibration_path()
    payload = {"methods": {name: c.to_json() for name, c in calibrations.items()}}
    Path(target).write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", "utf-8")
    return Path(target)


def fit(
    xs: list[list[float]], ys: list[int], l2: float = 0.3, steps: int = 3000, lr: float = 0.1
) -> Calibration:
    """Fit a standardised, L2-regularised logistic regression by gradient descent."""
    import numpy

    x = numpy.array(xs, dtype=numpy.float64)
    y = numpy.array(ys, dtype=numpy.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    w = numpy.zeros(z.shape[1])
    b = 0.0
    # Balance the classes so the minority (unanswerable) class counts as much.
    pos = max(1.0, y.sum())
    neg = max(1.0, len(y) - y.sum())
    sw = numpy.where(y == 1, len(y) / (2 * pos), len(y) / (2 * neg))
    for _ in range(steps):
        p = 1.0 / (1.0 + numpy.exp(-(z @ w + b)))
        g = (p - y) * sw
        w -= lr * (z.T @ g / len(y) + l2 * w / len(y))
        b -= lr * g.mean()
    return Calibration(
        weights=w.tolist(), bias=float(b), threshold=0.5, mean=mean.tolist(), scale=scale.tolist()
    )
