"""Child process of tests/test_review.py: marks ``n`` items of one dataset, one ``ReviewStore.mark``
call at a time (every tenth call marks two items at once), and acknowledges each item on stdout
(one id a line, flushed) only after the call that marked it returned.

    python tests/review_writer.py DB DATASET PREFIX N
"""
import sys

from ood_core.review import VERDICTS, ReviewStore


def main(path: str, dataset: str, prefix: str, n: int) -> None:
    store = ReviewStore(path)
    for i in range(n):
        items = [f"{prefix}{i:04d}"] + ([f"{prefix}{i:04d}b"] if i % 10 == 9 else [])
        store.mark(dataset, items, VERDICTS[i % 3], note=f"note {i}")
        sys.stdout.write("".join(item + "\n" for item in items))
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
