"""Access to the Hugging Face hub shared by checkpoints (ptft.hub), data sets (ptft.hubdata) and ptft.preflight: the
endpoint, offline mode, cache folders, which failures a retry may cure, the retry loop with backoff, and an error's
first line for messages. The callers keep their own error messages and retry policies (attempts, wait, what counts
as transient); only the mechanics live here. Imports nothing of ptft's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

# ------------------------------------------------------------------------------------------- where the hub is


def endpoint() -> str | None:
    """The hub's URL from HF_ENDPOINT, None for the client's default. Read at call time (huggingface_hub reads
    HF_ENDPOINT once, at import), so a test or a job can point here."""
    return os.environ.get("HF_ENDPOINT") or None


def offline() -> bool:
    """Whether the hub client is in offline mode (HF_HUB_OFFLINE, as read when huggingface_hub was imported)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> str | None:
    """The hub cache folder the environment names now (HF_HUB_CACHE, else $HF_HOME/hub), None for the client's
    default: passed as cache_dir to downloads. Like HF_ENDPOINT, read at call time (huggingface_hub fixes its default
    cache folder at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    return str(Path(os.environ["HF_HOME"]) / "hub") if os.environ.get("HF_HOME") else None


def client_hub_cache() -> str:
    """The hub cache folder huggingface_hub fixed at import (constants.HF_HUB_CACHE): where its own lookups without a
    cache_dir (try_to_load_from_cache, datasets' hub downloads) look."""
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def datasets_cache_dir() -> Path:
    """The datasets cache: inside the project unless HF_DATASETS_CACHE / HF_HOME say otherwise."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"])
    home = Path(os.environ.get("HF_HOME") or Path.cwd() / ".cache" / "huggingface")
    return home / "datasets"


# --------------------------------------------------------------------------------------------------- failures


def transient_http_error(err: BaseException) -> bool:
    """A failure of the hub or the way to it that a retry may cure: a 5xx, timeout or rate-limit answer, or a
    connection that could not be made or broke (the client's httpx2 transport errors)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else None
        return status is None or status >= 500 or status in (408, 429)
    return isinstance(err, (httpx2.TransportError, ConnectionError, TimeoutError))


def transient(err: BaseException, *, cut_transfers: bool = False) -> bool:
    """Whether a retry may cure `err`: never offline mode (OfflineModeIsEnabled, a ConnectionError no retry cures),
    else transient_http_error: the network or the server, not a missing repo, config or split.

    cut_transfers (snapshot downloads, ptft.hub): an HTTP answer is judged by its status alone; besides, any OSError
    (huggingface_hub's size-consistency check after a cut transfer) and, online, LocalEntryNotFoundError (the
    client's word for "could not reach the hub, and nothing cached") are worth another try.
    """
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return False
    if not cut_transfers:
        return transient_http_error(err)
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        return transient_http_error(err)
    if isinstance(err, LocalEntryNotFoundError):
        return not offline()
    return transient_http_error(err) or isinstance(err, OSError)


def retrying(action: Callable[[], Any], *, attempts: int, wait_s: float, is_transient: Callable[[Exception], bool],
             on_retry: Callable[[Exception, int, float], None],
             on_failure: Callable[[Exception, int, bool], None]) -> Any:  # fmt: skip
    """action()'s result, retrying a failure that is_transient accepts `attempts` times in all, waiting wait_s after
    the first failed attempt and twice as long after each further one (wait_s * 2 ** (attempt - 1) seconds).

    on_retry(err, attempt, wait) reports a retry before its wait (attempt: the one that failed, from 1). A failure
    that is not transient, or the last attempt's, goes to on_failure(err, attempt, transient) in the except clause:
    it raises the caller's own error in place of err (from err or from None, as it chooses), or returns, and err
    propagates unchanged. Raises ValueError for attempts < 1.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as err:  # noqa: BLE001 - sorted by is_transient; on_failure says what the caller sees
            worth_retrying = is_transient(err)
            if not worth_retrying or attempt == attempts:
                on_failure(err, attempt, worth_retrying)
                raise
            wait = wait_s * 2 ** (attempt - 1)
            on_retry(err, attempt, wait)
            time.sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")


def first_line(err: BaseException) -> str:
    """The first line of an error's message (HTTP errors append the response body on further lines), or its type's
    name when the message is empty."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def summary(err: BaseException) -> str:
    """The error's type and the first line of its message: "ConnectError: connection refused"."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"
