"""Uploaded images: read into memory within the size limit and decoded, never written to disk."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import File, UploadFile

from facesuite.errors import InputError
from facesuite.io import Decoded, EmptyFile, ImageTooLarge, ImageTooSmall, decode
from facesuite.serve.service import ApiError

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
# Enrolling more faces than this in one request is better done with `facesuite gallery enroll`.
MAX_ENROLL_FILES = 20
# Sorting a larger collection by person is `facesuite cluster`'s work (progress bar, --update).
MAX_CLUSTER_FILES = 100


def _describe_upload(error: InputError, name: str) -> ApiError:
    """The loader's error as the status a client should see, naming the uploaded file."""
    if isinstance(error, ImageTooLarge):
        return ApiError(413, f"{name}: {error.message}")
    if isinstance(error, EmptyFile):
        return ApiError(400, f"{name}: {error.message}")
    if isinstance(error, ImageTooSmall):
        return ApiError(422, f"{name}: {error.message}")
    return ApiError(415, f"{name}: not a readable image: {error.message}")


def read_uploads(uploads: Sequence[UploadFile | None], limit: int, fields: Sequence[str] | None = None,
                 skipped: list[str] | None = None) -> list[Decoded]:
    """Each upload read into memory (at most ``limit`` bytes) and decoded, named by its file name;
    nothing is written to disk and a client's file name never becomes a path. ``fields``: the form
    field of each upload when they are separate fields (default: every one from ``image``), so that
    a missing file is answered with the field it was expected in. ``skipped``: a list to note the
    name of each upload that cannot be decoded in, as a folder's bad file is skipped, instead of
    refusing the request; it is refused when no upload can be decoded."""
    names = list(fields) if fields is not None else ["image"] * len(uploads)
    missing = list(dict.fromkeys(name for upload, name in zip(uploads, names)
                                 if upload is None or not (upload.filename or upload.size)))
    if missing:
        listed = " and ".join(repr(name) for name in missing)
        raise ApiError(400, f"no file uploaded in field{'s' if len(missing) > 1 else ''} {listed}")
    decoded, refusals = [], []
    for upload, field_name in zip(uploads, names):
        name = upload.filename or field_name
        data = upload.file.read(limit + 1)
        if len(data) > limit:
            raise ApiError(413, f"{name}: upload too large (limit {limit / 2**20:g} MB)")
        try:
            decoded.append(decode(data, name))
        except InputError as error:
            refusal = _describe_upload(error, name)
            if skipped is None:
                raise refusal from None
            refusals.append((name, refusal))
    if refusals and not decoded:
        raise refusals[0][1]
    if skipped is not None:
        skipped.extend(name for name, _ in refusals)
    return decoded


# Optional in the schema, so a missing file is answered by read_uploads with a clear 400.
Upload = Annotated[UploadFile | None, File()]
Uploads = Annotated[list[UploadFile] | None, File()]
