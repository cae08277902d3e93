"""`facesuite gallery enroll|identify|list|remove`: a persistent gallery of known people."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facesuite.cli.detect import add_all_faces_option, exit_status, positive_int, print_skips
from facesuite.cli.recognition import add_embedder_options, recognition_analysis
from facesuite.cli.summary import counted
from facesuite.errors import InputError


def cmd_gallery_enroll(args: argparse.Namespace) -> int:
    from facesuite.data import read_identity_folders
    from facesuite.io import expand_paths, is_image_file

    if args.from_clusters:
        return _enroll_clusters(args)
    if not args.paths or args.names:
        raise InputError("give identity folders DIR, photos with --identity NAME, "
                         "or --from-clusters OUT with --name CLUSTER=NAME")
    if args.identity is not None:
        for path in map(Path, args.paths):
            people = sorted(child.name for child in path.iterdir() if child.is_dir()) if path.is_dir() else []
            if len(people) > 1 or (people and any(is_image_file(child) for child in path.iterdir())):
                # Most likely identity folders: enrolled under one name, they would make one person of several.
                raise InputError(f"holds folders {', '.join(people[:3])}{', ...' if len(people) > 3 else ''}: leave out "
                                 f"--identity to enrol each under its own name, or name the photos ({path}/*/*.jpg) "
                                 f"to enrol them all as {args.identity!r}", path)
        by_identity = {args.identity: expand_paths(args.paths)}
    else:
        photo = next((path for path in args.paths if is_image_file(path)), None)
        if photo is not None:
            raise InputError("a photo is enrolled under a name: add --identity NAME", photo)
        if len(args.paths) > 1:
            raise InputError("give one DIR of identity folders (or one list of images and identities), "
                             "or photos with --identity NAME")
        folder = Path(args.paths[0])
        if folder.is_dir() and not any(child.is_dir() for child in folder.iterdir()):
            raise InputError("holds no identity folders: put each person's photos in DIR/<name>/, "
                             "or enrol these photos of one person with --identity NAME", folder)
        by_identity = {}
        for path, identity in read_identity_folders(folder).clean:
            by_identity.setdefault(identity, []).append(path)
        loose = [child for child in folder.iterdir() if is_image_file(child)] if folder.is_dir() else []
        if loose:
            print(f"note: not enrolled, in no identity folder: {counted(len(loose), 'photo', 'photos')} directly in "
                  f"{folder} (e.g. {loose[0].name}); enrol them with --identity NAME", file=sys.stderr)
    with recognition_analysis(args).open_gallery(args.gallery, create=True) as gallery:
        # One transaction per identity: a crash never leaves half an identity.
        results = gallery.enroll_many(by_identity, progress="enroll")
    skipped_all = [item for result in results for item in result.skipped]
    enrolled, faces = sum(r.faces > 0 for r in results), sum(r.faces for r in results)
    print_skips(skipped_all)
    for result in results:
        for source, count in result.group_photos:
            print(f"note: {source} holds {count} faces: the most prominent was enrolled as {result.identity!r}",
                  file=sys.stderr)
        for source, other, distance in result.resembles:
            print(f"warning: {source}, enrolled as {result.identity!r}, looks like {other!r} already in the gallery "
                  f"(distance {distance:.4f}, verify would say same person): one of the two names may be wrong",
                  file=sys.stderr)
    print(f"enrolled {counted(enrolled, 'identity', 'identities')} ({counted(faces, 'face', 'faces')}) into {args.gallery}; "
          f"{counted(sum(r.already for r in results), 'photo', 'photos')} already enrolled, "
          f"{counted(len(skipped_all), 'file', 'files')} skipped")
    return exit_status(args.paths, skipped_all)


def _enroll_clusters(args: argparse.Namespace) -> int:
    from facesuite.cluster import Clusters, enroll_clusters, parse_cluster_names

    if args.paths or args.identity is not None or not args.names:
        raise InputError("--from-clusters enrols named clusters: give --name CLUSTER=NAME and no DIR or --identity")
    clusters = Clusters.load(args.from_clusters)
    names = parse_cluster_names(args.names, clusters)
    with recognition_analysis(args).open_gallery(args.gallery, create=True) as gallery:
        added = enroll_clusters(gallery, clusters, names)
    for name, faces in added.items():
        print(f"enrolled {name}: {counted(faces, 'face', 'faces')}")
    print(f"enrolled {counted(len(added), 'identity', 'identities')} ({counted(sum(added.values()), 'face', 'faces')}) "
          f"from {args.from_clusters} into {args.gallery}")
    return 0


def cmd_gallery_identify(args: argparse.Namespace) -> int:
    from facesuite.io import expand_paths

    paths = expand_paths(args.paths)
    with recognition_analysis(args, gallery=args.gallery) as analysis:
        faces, skipped = analysis.faces(paths, max_faces=None if args.all_faces else 1, progress="identify")
        rows = []
        for face, candidates in zip(faces, analysis.gallery.candidates(faces, top_k=args.top_k)):
            best = candidates[0]
            # face.identity and face.match_kind were decided with the face (a source match or the
            # face's own); a box with no face was compared with nobody.
            compared = face.match_kind is not None
            rows.append({
                "path": face.source, "face": face.index, "identity": face.identity, "distance": round(best.distance, 6) if compared else "",
                "nearest": best.identity if compared else "", "match_kind": face.match_kind or "",
                "source_photo": face.source_photo or "", "fallback": int(face.fallback),
                # What the face was held to, and why (facesuite.decide): its type's threshold, the
                # gallery's, or no comparison (no face, quality below the floor, a source match).
                "distortion": face.distortion or "", "quality": "" if face.quality is None else round(face.quality, 4),
                "threshold": "" if face.threshold is None else round(face.threshold, 6), "held_to": face.held_to or "",
                "candidates": ";".join(f"{m.identity}:{m.distance:.4f}" for m in candidates) if compared else "",
            })
    print_skips(skipped)
    _write_rows(rows, args.csv)
    return exit_status(args.paths, skipped)


def _write_rows(rows: list[dict], csv_path: str) -> None:
    from facesuite.text import is_stdout, write_rows

    if not rows:
        return
    write_rows(csv_path, rows)
    if not is_stdout(csv_path):
        print(f"wrote {len(rows)} rows to {csv_path}")


def cmd_gallery_list(args: argparse.Namespace) -> int:
    from facesuite.embed import embedders_of_space
    from facesuite.gallery import open_gallery

    with open_gallery(args.gallery) as gallery:
        entries = gallery.identities()
        if args.json:
            print(json.dumps({"space": gallery.embedder, "embedders": embedders_of_space(gallery.embedder),
                              "threshold": gallery.threshold,
                              "identities": [{"identity": i, "faces": n} for i, n in entries]}))
        else:
            for identity, count in entries:
                print(f"{identity}\t{count}")
            # The store records the vectors' space, named after one embedder of it: the line names
            # every embedder that can search it, so enrolling with the default does not read as
            # another embedder. Its threshold is the ceiling of every search threshold
            # (facesuite.decide), tighter per distortion type.
            embedders = embedders_of_space(gallery.embedder)
            searched_by = (f"--embedder {' or '.join(sorted(embedders))}" if embedders
                           else f"vectors of {gallery.embedder}'s space, which no installed embedder gives")
            print(f"{counted(len(entries), 'identity', 'identities')}, {counted(len(gallery), 'face', 'faces')} "
                  f"({searched_by}; threshold at most {gallery.threshold:.4f}, tighter per distortion type)")
    return 0


def cmd_gallery_remove(args: argparse.Namespace) -> int:
    from facesuite.gallery import open_gallery

    with open_gallery(args.gallery) as gallery:
        removed = gallery.remove(args.identity)
    print(f"removed {args.identity} ({counted(removed, 'face', 'faces')})")
    return 0


def register(groups: dict) -> None:
    root = groups["root"]
    gallery = root.add_parser("gallery", help="enroll, identify, list and remove known people",
                              description="A persistent gallery of enrolled identities: a folder (FAISS + SQLite), "
                                          "milvus://HOST:PORT/COLLECTION (Milvus) or NAME.db (Milvus Lite).")
    actions = gallery.add_subparsers(dest="action", required=True, metavar="ACTION")
    enroll = actions.add_parser("enroll", help="enroll DIR/<identity>/*.jpg, or photos under one name",
                                description="Enrol identity folders, photos under one name (--identity), or named "
                                            "clusters. Each photo gives its main face (its most prominent one): to enrol "
                                            "one person of a group photo, enrol a cluster of theirs (--from-clusters). A "
                                            "photo an identity already holds (the same file content) is not enrolled "
                                            "again: a re-run says how many were already there.")
    enroll.add_argument("paths", nargs="*", metavar="DIR|PHOTO",
                        help="identity folders DIR/<identity>/*.jpg, or a list of images and identities (a CSV with file "
                             "and identity columns, or CelebA's 'image identity' lines); with --identity: photos or "
                             "folders of photos of that one person")
    enroll.add_argument("--identity", metavar="NAME", help="enrol the photos given under this name")
    enroll.add_argument("--from-clusters", metavar="OUT", help="enrol clusters found by facesuite cluster --out OUT "
                        "(their stored embeddings: no photo is read again); name each with --name")
    enroll.add_argument("--name", dest="names", action="append", default=[], metavar="CLUSTER=NAME",
                        help="with --from-clusters: enrol cluster CLUSTER (its id in clusters.json) as NAME; repeatable")
    identify = actions.add_parser("identify", help="who is in each image")
    identify.add_argument("paths", nargs="+", help="images or folders")
    identify.add_argument("--top-k", type=positive_int, default=1, help="how many nearest identities to list as candidates (default 1)")
    add_all_faces_option(identify)  # one row per face; column face: 0 is the main one
    identify.add_argument("--csv", default="-", help="write results here (default -: stdout)")
    identify.add_argument("--no-source-match", action="store_true",
                          help="identify by face only: never answer that an image is a processed copy of an enrolled photo (match_kind source)")
    listing = actions.add_parser("list", help="enrolled identities")
    listing.add_argument("--json", action="store_true")
    remove = actions.add_parser("remove", help="remove an identity")
    remove.add_argument("identity")
    for action, handler in ((enroll, cmd_gallery_enroll), (identify, cmd_gallery_identify),
                            (listing, cmd_gallery_list), (remove, cmd_gallery_remove)):
        action.add_argument("--gallery", required=True, help="gallery folder, milvus://HOST:PORT/COLLECTION or NAME.db")
        if action in (enroll, identify):
            add_embedder_options(action)
        action.set_defaults(handler=handler)
