"""Turn an area's domain errors into gRPC statuses, with the error's text as the details edgectl prints."""
from __future__ import annotations

from typing import Sequence

import grpc


def abort_mapped(context: grpc.ServicerContext, exc: Exception, codes: Sequence[tuple[type[Exception], grpc.StatusCode]]) -> None:
    """Abort with the first matching status (details on one line); re-raise anything unmapped."""
    for kind, code in codes:
        if isinstance(exc, kind):
            context.abort(code, " ".join(str(exc).split()))
    raise exc
