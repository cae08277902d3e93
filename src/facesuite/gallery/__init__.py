"""Galleries of enrolled identities, searched by face embedding, on three backends behind one API.

    from facesuite.gallery import create_gallery, open_gallery

    with create_gallery("people/", "dlib-torch", 128, 0.09) as gallery:   # or NAME.db, milvus://...
        gallery.enroll("alice", vectors, sources)
        nearest = gallery.identify(probe)[0][0]   # a Match: identity, distance, source

``base`` (the protocol, the URI rules and the backend registry), ``faiss_sqlite`` (a folder),
``milvus`` (Milvus and Milvus Lite), ``backends`` (imports both; opens and creates by URI). A store
says who is nearest; what facesuite answers (a name, ``unknown``, ``unrecognisable``) is decided by
:mod:`facesuite.decide`, which reads each face's distortion type and quality: use a gallery through
:meth:`facesuite.FaceAnalysis.open_gallery`, which takes images and decides by that rule.
"""

from facesuite.decide import UNKNOWN
from facesuite.gallery.base import DB_NAME, GalleryStore, Match, display_uri, gallery_exists, is_milvus_uri

_FOLDER_BACKEND = ("INDEX_NAME", "FolderGallery")
_BACKENDS = ("create_gallery", "open_gallery")


def __getattr__(name: str):
    # The folder backend imports FAISS (50-60 ms); analysing images without a gallery never needs it.
    if name in _FOLDER_BACKEND:
        from facesuite.gallery import faiss_sqlite

        return getattr(faiss_sqlite, name)
    if name in _BACKENDS:
        from facesuite.gallery import backends

        return getattr(backends, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DB_NAME", "INDEX_NAME", "UNKNOWN", "FolderGallery", "GalleryStore", "Match", "create_gallery", "display_uri",
           "gallery_exists", "is_milvus_uri", "open_gallery"]
