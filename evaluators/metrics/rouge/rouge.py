# Adapted from the Hugging Face `evaluate` hub module `evaluate-metric/rouge`
# (Copyright 2020 The HuggingFace Evaluate Authors, Apache License 2.0), rewritten for
# evalctl so it loads offline from this folder. Difference from the original: the
# aggregate is the plain mean of per-example F-measures (the original reports the median of
# a random bootstrap, which varies from run to run).
"""ROUGE metric: a thin wrapper around Google Research's `rouge_score` package."""

import datasets
import evaluate
from rouge_score import rouge_scorer

_CITATION = """\
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    address = "Barcelona, Spain",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W04-1013",
    pages = "74--81",
}
"""

_DESCRIPTION = """\
ROUGE (Recall-Oriented Understudy for Gisting Evaluation) compares a generated text with
one or more references by n-gram (rouge1, rouge2) and longest-common-subsequence overlap
(rougeL; rougeLsum splits texts into sentences on newlines first). Scores are F-measures
in [0, 1]. The default tokenizer lowercases and keeps only ASCII letters and digits; pass
`tokenizer` for other scripts.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of reference texts, or of lists of references (the best one counts).
    rouge_types: which scores to return, among "rouge1" .. "rouge9", "rougeL", "rougeLsum".
        Default: ["rouge1", "rouge2", "rougeL", "rougeLsum"].
    use_aggregator: True returns the mean F-measure per type; False a list per type, one
        value per example.
    use_stemmer: strip word suffixes with the Porter stemmer before matching.
    tokenizer: an object with a `tokenize(text) -> list[str]` method, or a callable.
Returns:
    {rouge_type: float} with use_aggregator, else {rouge_type: list[float]}.
Examples:
    >>> rouge = evaluate.load("evaluators/metrics/rouge")
    >>> rouge.compute(predictions=["hello there"], references=["hello there"])["rouge1"]
    1.0
"""

DEFAULT_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


class _CallableTokenizer:
    def __init__(self, function):
        self.function = function

    def tokenize(self, text):
        return self.function(text)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(datasets.Value("string", id="sequence")),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=["https://en.wikipedia.org/wiki/ROUGE_(metric)"],
        )

    def _compute(
        self,
        predictions,
        references,
        rouge_types=None,
        use_aggregator=True,
        use_stemmer=False,
        tokenizer=None,
    ):
        rouge_types = list(rouge_types or DEFAULT_TYPES)
        if tokenizer is not None and not hasattr(tokenizer, "tokenize"):
            tokenizer = _CallableTokenizer(tokenizer)
        scorer = rouge_scorer.RougeScorer(
            rouge_types=rouge_types, use_stemmer=use_stemmer, tokenizer=tokenizer
        )
        per_example = {key: [] for key in rouge_types}
        for reference, prediction in zip(references, predictions, strict=True):
            if isinstance(reference, list):
                score = scorer.score_multi(reference, prediction)
            else:
                score = scorer.score(reference, prediction)
            for key in rouge_types:
                per_example[key].append(float(score[key].fmeasure))
        if not use_aggregator:
            return per_example
        return {
            key: (sum(values) / len(values) if values else 0.0)
            for key, values in per_example.items()
        }
