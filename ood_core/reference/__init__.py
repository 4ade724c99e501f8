"""A saved reference: fit once on in-distribution images, then check new batches against its frozen
thresholds, with odds (see docs/REFERENCE.md).

:meth:`Reference.fit` embeds the reference images, fits both scorers (the KNN feature score and the
prediction score of a logistic regression on the embeddings) and freezes each threshold at a
percentile of its fit scores. :meth:`Reference.save` writes a folder that holds arrays and JSON only
(no pickle, nothing executable) with a manifest of digests; :meth:`Reference.load` refuses a folder
whose files were damaged, swapped, removed or added, or that another format version wrote.
:meth:`Reference.check` embeds a batch exactly as the reference was embedded, scores it with the frozen
scorers and tests each flagged count against the Beta-binomial range of in-distribution batches
(:mod:`ood_core._binomial`); every check of a saved reference is logged in ``history.sqlite`` beside it.

Modules: ``_reference`` (:class:`Reference`), ``_result`` (:class:`BatchResult`), ``_folder`` (the
folder's layout, manifest and verification, :class:`ReferenceError`), ``_frozen`` (embedding as the
reference did, the scorers and the classifier rebuilt from arrays).
"""
from .._binomial import expected_flag_rate, flag_rate_interval
from ._folder import REFERENCE_FORMAT, ReferenceError
from ._reference import Reference
from ._result import BatchResult, read_history

__all__ = ["BatchResult", "Reference", "ReferenceError", "REFERENCE_FORMAT", "expected_flag_rate", "flag_rate_interval",
           "read_history"]
