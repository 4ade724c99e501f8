"""The one place a ``device`` argument becomes a torch device (embedding and neighbour search)."""
from __future__ import annotations


def resolve_device(device=None):
    """``"auto"`` (or None) picks CUDA when present, else the CPU; ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` and ``"mps"`` are taken as asked. MPS is never picked by ``"auto"``: it has no
    float64, which the exact scores need."""
    import torch

    if isinstance(device, torch.device):
        dev = device
    elif device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif not isinstance(device, str):
        raise TypeError(f"device must be a string like 'auto', 'cpu' or 'cuda'; got {type(device).__name__}")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda', "
                             "'cuda:N' or 'mps'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} requested but CUDA is not available on this machine; "
                         "use 'auto' or 'cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={str(device)!r} requested but MPS is not available on this machine")
    return dev
