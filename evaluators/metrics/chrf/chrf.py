# Adapted from the Hugging Face `evaluate` hub module `evaluate-metric/chrf`
# (Copyright 2021 The HuggingFace Evaluate Authors, Apache License 2.0), rewritten for
# evalctl so it loads offline from this folder. Added: `use_aggregator=False` returns
# sentence-level chrF per example.
"""chrF / chrF++ metric: sacrebleu's character n-gram F-score."""

import datasets
import evaluate
from sacrebleu import CHRF

_CITATION = """\
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    address = "Lisbon, Portugal",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W15-3049",
    pages = "392--395",
}
"""

_DESCRIPTION = """\
chrF is the F-score (recall weighted by beta) of character n-grams (up to char_order)
between generated texts and references; chrF++ (word_order=2) adds word unigrams and
bigrams. Computed by sacrebleu on a 0 to 100 scale. The corpus score pools n-gram
statistics over all examples, so it is not the mean of the sentence scores.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of reference texts, or of lists of references (every prediction must
        have the same number of references).
    char_order: character n-gram order (6).
    word_order: word n-gram order (0; 2 gives chrF++).
    beta: recall weight (2).
    lowercase: lowercase texts before scoring.
    whitespace: keep whitespace in character n-grams.
    eps_smoothing: sacrebleu's epsilon smoothing instead of the original chrF++ rule.
    use_aggregator: True returns the corpus score; False a list with one sentence-level
        score per example.
Returns:
    score (float, or list of floats without aggregation), char_order, word_order, beta.
Examples:
    >>> chrf = evaluate.load("evaluators/metrics/chrf")
    >>> chrf.compute(predictions=["the cat"], references=["the cat"])["score"]
    100.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(evaluate.Metric):
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
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://aclanthology.org/W15-3049"],
        )

    def _compute(
        self,
        predictions,
        references,
        char_order=CHRF.CHAR_ORDER,
        word_order=CHRF.WORD_ORDER,
        beta=CHRF.BETA,
        lowercase=False,
        whitespace=False,
        eps_smoothing=False,
        use_aggregator=True,
    ):
        rows = [ref if isinstance(ref, list) else [ref] for ref in references]
        if len({len(row) for row in rows}) > 1:
            raise ValueError("chrf: every prediction needs the same number of references")
        scorer = CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        if use_aggregator:
            streams = [[row[i] for row in rows] for i in range(len(rows[0]) if rows else 1)]
            score = float(scorer.corpus_score(list(predictions), streams).score)
        else:
            score = [
                float(scorer.sentence_score(prediction, row).score)
                for prediction, row in zip(predictions, rows, strict=True)
            ]
        return {"score": score, "char_order": char_order, "word_order": word_order, "beta": beta}
