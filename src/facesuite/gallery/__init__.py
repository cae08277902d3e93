"""Galleries of enrolled identities, searched by face embedding, on three backends behind one API.

    from facesuite.gallery import create_gallery, open_gallery

    with create_gallery("people/", "dlib-torch", 128, 0.09) as gallery:   # or NAME.db, milvus://...
        gallery.enroll("alice", vectors, sources)
        print(gallery.decide(gallery.identify(probe)[0][0]))

``base`` (the protocol and the URI rules), ``faiss_sqlite`` (a folder), ``milvus`` (Milvus and
Milvus Lite). Most callers use a gallery through
:meth:`facesuite.FaceAnalysis.open_gallery`, which takes images instead of vectors.
"""

from facesuite.gallery.base import (
    UNKNOWN,
    GalleryStore,
    Match,
    create_gallery,
    display_uri,
    gallery_exists,
    is_milvus_uri,
    open_gallery,
)
from facesuite.gallery.faiss_sqlite import DB_NAME, INDEX_NAME, Gallery

__all__ = ["DB_NAME", "INDEX_NAME", "UNKNOWN", "Gallery", "GalleryStore", "Match", "create_gallery", "display_uri",
           "gallery_exists", "is_milvus_uri", "open_gallery"]
