# Adapted from the Hugging Face `evaluate` hub module `evaluate-metric/sacrebleu`
# (Copyright 2020 The HuggingFace Evaluate Authors, Apache License 2.0), rewritten for
# evalctl so it loads offline from this folder. Unlike the hub's `bleu` module (an NLTK-style
# reimplementation on a 0-1 scale), this is sacrebleu's standard corpus BLEU (0-100).
"""BLEU metric: sacrebleu's corpus-level BLEU."""

import datasets
import evaluate
import sacrebleu

_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    address = "Belgium, Brussels",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""

_DESCRIPTION = """\
BLEU compares n-gram (1 to 4) precision of generated texts against references over the
whole corpus, with a brevity penalty, computed by sacrebleu with its standard tokenizer
("13a") and exponential smoothing. BLEU is a corpus statistic: averaging sentence BLEU does
not give corpus BLEU, so this module returns only the corpus score (0 to 100).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated texts.
    references: list of reference texts, or of lists of references (every prediction must
        have the same number of references).
    smooth_method: "exp" (default), "floor", "add-k" or "none".
    smooth_value: the floor or add-k value.
    lowercase: lowercase texts before scoring.
    tokenize: sacrebleu tokenizer name ("13a" by default, "zh", "intl", "char", "none").
    use_effective_order: ignore n-gram orders with no matches (for very short texts).
Returns:
    score (0-100), counts, totals, precisions, bp, sys_len, ref_len.
Examples:
    >>> bleu = evaluate.load("evaluators/metrics/bleu")
    >>> bleu.compute(predictions=["the cat sat on the mat"],
    ...              references=["the cat sat on the mat"])["score"]
    100.00000000000004
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
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
            reference_urls=["https://www.aclweb.org/anthology/W18-6319"],
        )

    def _compute(
        self,
        predictions,
        references,
        smooth_method="exp",
        smooth_value=None,
        lowercase=False,
        tokenize=None,
        use_effective_order=False,
    ):
        streams = _reference_streams(references)
        output = sacrebleu.corpus_bleu(
            list(predictions),
            streams,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            force=True,
            lowercase=lowercase,
            tokenize=tokenize,
            use_effective_order=use_effective_order,
        )
        return {
            "score": float(output.score),
            "counts": list(output.counts),
            "totals": list(output.totals),
            "precisions": [float(p) for p in output.precisions],
            "bp": float(output.bp),
            "sys_len": int(output.sys_len),
            "ref_len": int(output.ref_len),
        }


def _reference_streams(references):
    """Turn per-prediction references into sacrebleu's per-reference streams."""
    rows = [ref if isinstance(ref, list) else [ref] for ref in references]
    counts = {len(row) for row in rows}
    if len(counts) > 1:
        raise ValueError("bleu: every prediction needs the same number of references")
    width = counts.pop() if counts else 1
    return [[row[i] for row in rows] for i in range(width)]
