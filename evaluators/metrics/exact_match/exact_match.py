# Adapted from the Hugging Face `evaluate` hub module `evaluate-metric/exact_match`
# (Copyright 2022 The HuggingFace Evaluate Authors, Apache License 2.0), rewritten for
# evalctl so it loads offline from this folder. Added: `use_aggregator=False` returns the
# 0/1 match of each example.
"""Exact match metric: the share of predictions identical to their reference."""

import re
import string

import datasets
import evaluate

_DESCRIPTION = """\
Exact match is 1 for a prediction identical to its reference and 0 otherwise; the corpus
score is the mean, in [0, 1]. Options remove regular expressions, case, punctuation or
digits from both texts before comparing.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of reference texts.
    regexes_to_ignore: regular expressions removed from both texts first.
    ignore_case: lowercase both texts.
    ignore_punctuation: remove ASCII punctuation (string.punctuation) from both texts.
    ignore_numbers: remove digits from both texts.
    use_aggregator: True returns the mean; False a list of 0/1 values, one per example.
Returns:
    exact_match: float in [0, 1], or a list of 0.0 / 1.0 without aggregation.
Examples:
    >>> exact_match = evaluate.load("evaluators/metrics/exact_match")
    >>> exact_match.compute(predictions=["Paris."], references=["paris"],
    ...                     ignore_case=True, ignore_punctuation=True)
    {'exact_match': 1.0}
"""

_CITATION = ""

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_DIGITS = str.maketrans("", "", string.digits)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string", id="sequence"),
                    "references": datasets.Value("string", id="sequence"),
                }
            ),
            reference_urls=[],
        )

    def _compute(
        self,
        predictions,
        references,
        regexes_to_ignore=None,
        ignore_case=False,
        ignore_punctuation=False,
        ignore_numbers=False,
        use_aggregator=True,
    ):
        def normalize(text):
            for pattern in regexes_to_ignore or []:
                text = re.sub(pattern, "", text)
            if ignore_case:
                text = text.lower()
            if ignore_punctuation:
                text = text.translate(_PUNCTUATION)
            if ignore_numbers:
                text = text.translate(_DIGITS)
            return text

        matches = [
            float(normalize(prediction) == normalize(reference))
            for prediction, reference in zip(predictions, references, strict=True)
        ]
        if not use_aggregator:
            return {"exact_match": matches}
        return {"exact_match": sum(matches) / len(matches) if matches else 0.0}
