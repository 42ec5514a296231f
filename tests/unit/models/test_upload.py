"""Receiving a push: refusals come before anything is stored, and leave nothing behind."""
from __future__ import annotations

import numpy as np
import pytest

from coordinator.models.upload import UploadRejected, UploadTooLarge, receive_push
from edgefleet.v1 import admin_pb2
from tests.unit.models.conftest import digits_like, npz_bytes, push_chunks

LIMITS = dict(max_model_bytes=10_000, max_data_bytes=1_000_000)


def stored(artifacts) -> list[str]:
    return sorted(p.name for p in artifacts.root.iterdir())


def test_a_good_push_stores_every_file_under_its_digest(artifacts):
    recipe = b'techniques = ["fp32", "int8"]\n'
    upload = receive_push(
        push_chunks(model=b"M" * 2500, recipe_file=("fast.toml", recipe), spec_file=("space.yaml", b"family: mlp\n"), task="classification", version="2"),
        artifacts, **LIMITS,
    )
    i = upload.inputs
    assert (upload.name, upload.version) == ("digits", "2")
    assert (i.model_filename, i.model_bytes, i.data_filename, i.recipe, i.spec_filename, i.task) == (
        "digits.keras", 2500, "digits.npz", "fast.toml", "space.yaml", "classification")
    assert artifacts.path(i.model_sha256).read_bytes() == b"M" * 2500
    assert artifacts.path(i.recipe_sha256).read_bytes() == recipe
    assert stored(artifacts) == sorted([i.model_sha256, i.data_sha256, i.recipe_sha256, i.spec_sha256])


def test_builtin_recipe_and_no_version(artifacts):
    upload = receive_push(push_chunks(recipe="full"), artifacts, **LIMITS)
    assert (upload.version, upload.inputs.recipe, upload.inputs.recipe_sha256, upload.inputs.task) == (None, "full", None, "")


def test_model_over_the_size_limit_is_refused_while_receiving(artifacts):
    sent = []

    def counting(stream):
        for message in stream:
            sent.append(message)
            yield message

    stream = push_chunks(model=b"M" * 50_000, chunk=1000)
    with pytest.raises(UploadTooLarge, match=r"model digits.keras is over the configured size limit of 10,000 bytes"):
        receive_push(counting(stream), artifacts, **LIMITS)
    assert len(sent) < 15  # refused after about limit/chunk messages, not after the whole file
    assert stored(artifacts) == []


def bad_data_cases():
    d = digits_like()
    missing = {k: v for k, v in d.items() if k != "y_val"}
    nan = dict(d, x_val=np.where(np.arange(d["x_val"].size).reshape(d["x_val"].shape) == 3, np.nan, d["x_val"]).astype(np.float32))
    empty = dict(d, x_val=d["x_val"][:0], y_val=d["y_val"][:0])
    return [
        (npz_bytes(**missing), r"digits.npz is missing array\(s\) y_val"),
        (npz_bytes(**nan), r"x_val contains 1 NaN value"),
        (npz_bytes(**empty), r"x_val is empty"),
        (b"not a zip at all", r"digits.npz is not a readable .npz"),
    ]


@pytest.mark.parametrize("data, message", bad_data_cases())
def test_bad_data_is_refused_with_the_reason_and_nothing_is_stored(artifacts, data, message):
    with pytest.raises(UploadRejected, match=message):
        receive_push(push_chunks(data=data), artifacts, **LIMITS)
    assert stored(artifacts) == []


def test_recipe_with_an_unknown_technique_is_refused(artifacts):
    with pytest.raises(UploadRejected, match=r"unknown technique 'quantum'.*known: fp32"):
        receive_push(push_chunks(recipe_file=("r.toml", b'techniques = ["int8", "quantum"]\n')), artifacts, **LIMITS)
    assert stored(artifacts) == []


@pytest.mark.parametrize("kw, message", [
    ({"name": "bad name"}, "bad model name 'bad name'"),
    ({"version": "1/2"}, "bad version '1/2'"),
    ({"task": "ranking"}, "unknown task 'ranking'"),
    ({"recipe": "fastest"}, "unknown recipe 'fastest'"),
    ({"model": b""}, "the model digits.keras is empty"),
    ({"data": b""}, "no data was sent"),
    ({"filename": ""}, "no model file name"),
])
def test_bad_headers_and_missing_files(artifacts, kw, message):
    with pytest.raises(UploadRejected, match=message):
        receive_push(push_chunks(**kw), artifacts, **LIMITS)
    assert stored(artifacts) == []


def test_stream_must_start_with_one_header(artifacts):
    with pytest.raises(UploadRejected, match="must start with its header"):
        receive_push(iter([admin_pb2.PushModelChunk(model=admin_pb2.FileChunk(data=b"x"))]), artifacts, **LIMITS)
    twice = list(push_chunks())
    with pytest.raises(UploadRejected, match="exactly one header"):
        receive_push(iter(twice[:2] + twice[:1] + twice[2:]), artifacts, **LIMITS)
    assert stored(artifacts) == []


def test_file_names_cannot_escape(artifacts):
    upload = receive_push(push_chunks(filename="../../etc/evil.keras"), artifacts, **LIMITS)
    assert upload.inputs.model_filename == "evil.keras"
