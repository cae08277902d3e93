"""Fault injection for tests that run facesuite in other processes (pool workers, Ray actors).

A test puts this folder on ``PYTHONPATH`` of the processes it starts; Python imports it at start-up.
With ``FACESUITE_TEST_FAULT_ON=NAME``, face extraction raises a ``RuntimeError`` for any batch that
holds a file called NAME: a stand-in for a bug in facesuite (the image itself is fine). With
``FACESUITE_TEST_FAULT_ONCE=FILE`` too, only the first such batch fails (FILE marks it), the way a
transient fault would, so a rerun under the same settings finishes.
"""

import os

if os.environ.get("FACESUITE_TEST_FAULT_ON"):
    from pathlib import Path

    from facesuite.detect import extract

    # Every extraction path (crops, iter_crops, routed embedding) runs its batches through _process.
    _process = extract.FaceExtractor._process

    def _faulty_process(self, batch, *args, **kwargs):
        name, marker = os.environ["FACESUITE_TEST_FAULT_ON"], os.environ.get("FACESUITE_TEST_FAULT_ONCE")
        if any(isinstance(p, (str, Path)) and Path(p).name == name for p in batch) and not (marker and os.path.exists(marker)):
            if marker:
                Path(marker).touch()
            raise RuntimeError(f"injected fault while extracting a batch holding {name}")
        return _process(self, batch, *args, **kwargs)

    extract.FaceExtractor._process = _faulty_process
